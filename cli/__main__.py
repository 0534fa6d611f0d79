from vecstore.cli.main import main

main()
