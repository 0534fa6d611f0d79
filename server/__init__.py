"""The sidecar server (``vecstore.server``): length-prefixed msgpack frames on a local socket.

Not built yet: it lands with the sidecar-server issue.  The package exists so
that the ``package-dir`` layout (``server/`` installed as ``vecstore.server``)
is fixed and tested from the start.
"""
