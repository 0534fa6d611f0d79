"""The sidecar's clients and its behaviour under load: timeouts, reconnects, the asyncio
client, many concurrent clients, long writes, graceful shutdown, the ``serve`` command."""

from __future__ import annotations

import asyncio
import signal
import socket
import struct
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner
from server_kit import raw_socket, recv_frame, serve_subprocess, start
from vecstore.cli.main import main
from vecstore.server import ops, start_in_thread
from vecstore.server.protocol import packb

import vecstore

TEST_OP = "test.sleep"


@pytest.fixture
def sleep_op():
    """A test-only op that sleeps on the server, to make a request slow on demand."""

    @ops.op(TEST_OP, "read")
    def _sleep(s, a):
        time.sleep(a["seconds"])
        return a["seconds"]

    yield
    del ops.OPS[TEST_OP]



def test_bad_urls_and_nothing_listening(tmp_path):
    for url in ("http://x", "unix://", "tcp://127.0.0.1", "tcp://:80"):
        with pytest.raises(vecstore.InvalidValueError):
            vecstore.connect(url)
    with pytest.raises(vecstore.ServerConnectionError, match="cannot connect"):
        vecstore.connect(f"unix://{tmp_path}/none.sock", timeout=0.2)
    with pytest.raises(vecstore.ServerConnectionError):
        vecstore.connect("tcp://127.0.0.1:1", timeout=0.2)
    with pytest.raises(vecstore.InvalidValueError):
        vecstore.connect(f"unix://{tmp_path}/none.sock", timeout=0)


def test_a_server_that_never_answers_times_out(tmp_path):
    path = str(tmp_path / "mute.sock")
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(path)
    mute.listen(8)  # accepts connections (the kernel does) but never reads or answers
    try:
        t0 = time.monotonic()
        with pytest.raises(vecstore.ServerTimeoutError, match="no answer"):
            vecstore.connect(f"unix://{path}", timeout=0.3)
        assert time.monotonic() - t0 < 10
        with pytest.raises(TimeoutError):  # ServerTimeoutError is a TimeoutError too
            asyncio.run(vecstore.aconnect(f"unix://{path}", timeout=0.3))
    finally:
        mute.close()


def test_slow_call_times_out_and_the_client_recovers(filled, tmp_path, sleep_op):
    store, ids, _ = filled
    with start(store, "unix", tmp_path) as running:
        client = vecstore.connect(running.address, timeout=0.3)
        items = client.table("items")
        with pytest.raises(vecstore.ServerTimeoutError):
            client.call(TEST_OP, seconds=1.0)
        assert items.get(ids[:3]).found.all()  # a fresh connection; the late answer is never seen

        async def go():
            ac = await vecstore.aconnect(running.address, timeout=0.3)
            with pytest.raises(vecstore.ServerTimeoutError):
                await ac.call(TEST_OP, seconds=1.0)
            t = await ac.table("items")
            rows = await t.get(ids[:3])  # same connection: the late answer is dropped by its id
            await ac.close()
            return rows

        assert asyncio.run(go()).found.all()
        client.close()
        with pytest.raises(vecstore.ServerConnectionError, match="closed"):
            items.get(ids[:1])


def test_reconnect_after_the_server_restarts(filled, tmp_path):
    store, ids, cols = filled
    path = str(tmp_path / "vs.sock")
    running = start_in_thread(store, unix=path)
    client = vecstore.connect(running.address, timeout=0.5)
    items = client.table("items")
    assert items.get(ids[:5]).found.all()

    async def async_get(ac, t):
        return (await t.get(ids[:5])).found.all()

    loop = asyncio.new_event_loop()
    ac = loop.run_until_complete(vecstore.aconnect(running.address, timeout=0.5))
    at = loop.run_until_complete(ac.table("items"))
    assert loop.run_until_complete(async_get(ac, at))
    running.stop()
    with pytest.raises(vecstore.ServerConnectionError):
        items.get(ids[:1])  # nobody listening until the deadline
    with pytest.raises(vecstore.ServerConnectionError):
        loop.run_until_complete(async_get(ac, at))
    running = start_in_thread(store, unix=path)  # restarted on the same socket
    try:
        rows = items.get(ids[:5])
        np.testing.assert_array_equal(rows["price"], cols["price"][:5])
        assert items.put(["after"], {"price": [1.0]}) == 1
        assert loop.run_until_complete(async_get(ac, at))
        loop.run_until_complete(ac.close())
    finally:
        loop.close()
        client.close()
        running.stop()


def test_asyncio_client_has_the_same_surface(filled, tmp_path):
    store, ids, cols = filled

    async def go(address):
        async with await vecstore.aconnect(address) as client:
            assert await client.tables() == ["items"] and client.server_version == vecstore.__version__
            items = await client.table("items")
            many = await asyncio.gather(*(items.get(ids[i : i + 10], features=["price"]) for i in range(0, 100, 10)))
            got = np.concatenate([r["price"] for r in many])
            np.testing.assert_array_equal(got, cols["price"])
            assert await items.put(["a", "b"], {"price": [1.0, 2.0], "category": ["x", None]}) == 2
            assert await items.count() == 102
            assert (await items.contains(["a", "zz"])).tolist() == [True, False]
            assert await items.may_contain("a") is True
            rows = await items.get(["a", "b"])
            assert isinstance(rows, vecstore.Rows) and rows["category"].tolist() == ["x", None]
            assert await items.delete(["b"]) == 1
            info = await items.info()
            assert isinstance(info, vecstore.TableInfo) and info.rows == 101
            seen = [r async for r in items.scan(batch_size=30)]
            assert sum(len(r) for r in seen) == 101
            assert sorted(i for batch in [b async for b in items.ids()] for i in batch) == sorted(ids + ["a"])
            hits = await items.search(cols["embedding"][4], k=3, exact=True)
            assert isinstance(hits, vecstore.SearchResult) and hits.ids[0] == ids[4]
            assert ids[4] not in (await items.search_by_id(ids[4], k=3)).ids
            assert (await items.bloom()).may_contain(ids).all()
            with pytest.raises(vecstore.InvalidIdError):
                await items.get([1.5])
            with pytest.raises(vecstore.TableNotFoundError):
                await client.table("nope")
            other = await client.create_table("other", {"x": vecstore.Scalar("i32")})
            assert await other.put([1], {"x": [5]}) == 1
            await client.drop_table("other")
            with pytest.raises(vecstore.TableNotFoundError):
                await other.count()
            assert isinstance(await client.info(), vecstore.StoreInfo)
            assert (await client.stats()).ops["get"].requests >= 11
            assert await client.ping() > 0 and await client.verify() == []
            assert (await client.rebuild_bloom() if False else True)

    with start(store, "tcp", tmp_path) as running:
        asyncio.run(go(running.address))


def test_many_concurrent_clients_reading_and_writing(filled, tmp_path):
    store, ids, _cols = filled
    n_threads, rounds = 6, 25
    acked: list[list[str]] = [[] for _ in range(n_threads)]
    errors: list[BaseException] = []
    with start(store, "unix", tmp_path) as running:
        shared = vecstore.connect(running.address, timeout=30)  # one client shared by two threads

        def worker(k: int) -> None:
            client = shared if k < 2 else vecstore.connect(running.address, timeout=30)
            items = client.table("items")
            try:
                for r in range(rounds):
                    mine = [f"w{k}-{r}-{j}" for j in range(20)]
                    vals = np.arange(20) + 1000 * k + r
                    # Two features written together: a reader must never see one without the other.
                    assert items.put(mine, {"clicks": vals, "price": vals * 2.0}) == 20
                    acked[k].extend(mine)
                    other = acked[(k + 1) % n_threads][-20:]
                    rows = items.get(other + ids[:10], features=["clicks", "price"])
                    found = rows.found
                    assert (rows["price"][found] == rows["clicks"][found] * 2.0)[: len(other)].all()
                    assert found[len(other) :].all()
                    assert items.contains(mine).all()
            except BaseException as e:  # noqa: BLE001 - reported to the main thread
                errors.append(e)

        async def async_reader() -> int:
            ac = await vecstore.aconnect(running.address, timeout=30)
            t = await ac.table("items")
            done = 0
            for _ in range(rounds):
                res = await asyncio.gather(*(t.get(ids[i : i + 5]) for i in range(0, 50, 5)))
                assert all(r.found.all() for r in res)
                done += len(res)
            await ac.close()
            return done

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
        for th in threads:
            th.start()
        assert asyncio.run(async_reader()) == 10 * rounds
        for th in threads:
            th.join(120)
        assert not errors, errors[0]
        items = shared.table("items")
        everything = [i for a in acked for i in a]
        assert len(everything) == n_threads * rounds * 20
        assert items.get(everything).found.all() and len(items) == 100 + len(everything)
        assert items.verify() == []
        shared.close()


def test_reads_go_on_while_a_long_write_runs(filled, tmp_path):
    store, ids, _ = filled
    rng = np.random.default_rng(0)
    n = 150_000
    big_ids = np.arange(10**6, 10**6 + n)
    big = {"clicks": big_ids, "embedding": rng.normal(size=(n, 16)).astype(np.float32), "price": rng.random(n)}
    with start(store, "unix", tmp_path) as running:
        writer = vecstore.connect(running.address, timeout=120)
        reader = vecstore.connect(running.address, timeout=120)
        items_w, items_r = writer.table("items"), reader.table("items")
        done = threading.Event()
        result: list[int] = []
        th = threading.Thread(target=lambda: (result.append(items_w.put(big_ids, big)), done.set()))
        th.start()
        reads_during_write = 0
        for _ in range(5000):  # bounded; stops as soon as the write is acknowledged
            if done.is_set():
                break
            assert items_r.get(ids[:20]).found.all()
            reads_during_write += 1 if not done.is_set() else 0
        th.join(120)
        assert result == [n]
        assert reads_during_write > 0  # reads were answered before the write finished
        assert items_r.get(big_ids[-5:]).found.all()
        writer.close()
        reader.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_graceful_shutdown_loses_no_acknowledged_write(tmp_path, sig):
    path, sock = tmp_path / "g.vs", tmp_path / "g.sock"
    with vecstore.open(path) as s:
        s.create_table("t", {"x": vecstore.Scalar("i64")})
    proc = serve_subprocess(path, sock)
    acked: list[int] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        client = vecstore.connect(f"unix://{sock}", timeout=5)
        t = client.table("t")
        try:
            for i in range(100_000):  # bounded; ends when the server goes away
                if stop.is_set():
                    return
                ids = np.arange(i * 50, (i + 1) * 50)
                t.put(ids, {"x": ids})
                acked.append(i)
        except vecstore.ServerConnectionError as e:
            failures.append(e)

    th = threading.Thread(target=writer)
    th.start()
    try:
        for _ in range(3000):
            if len(acked) >= 20:
                break
            time.sleep(0.01)
        proc.send_signal(sig)
        rc = proc.wait(60)
    finally:
        stop.set()
        th.join(60)
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, proc.stderr.read().decode() if proc.stderr else ""
    assert not sock.exists()
    assert len(acked) >= 20
    with vecstore.open(path) as s:
        t = s.table("t")
        want = np.concatenate([np.arange(i * 50, (i + 1) * 50) for i in acked])
        assert t.contains(want).all()  # every acknowledged write survived
        assert t.verify() == []


def test_bloom_snapshot_skips_absent_ids(filled, tmp_path):
    store, ids, _ = filled
    with start(store, "unix", tmp_path) as running, vecstore.connect(running.address) as client:
        snap = client.table("items").bloom()
        assert snap.may_contain(ids).all()  # never a false negative for rows it saw
        assert snap.may_contain(ids[0]) is True
        absent = [f"absent-{i}" for i in range(2000)]
        assert snap.may_contain(absent).mean() < 0.05
        np.testing.assert_array_equal(client.hash_ids(ids), store.hash_ids(ids))


def test_serve_command(tmp_path):
    runner = CliRunner()
    out = runner.invoke(main, ["serve", "--help"])
    assert out.exit_code == 0 and "--token-file" in out.output and "--max-frame-bytes" in out.output
    vecstore.open(tmp_path / "s.vs").close()  # serve never creates a store
    out = runner.invoke(main, ["serve", str(tmp_path / "s.vs"), "--host", "0.0.0.0", "--port", "0"])
    assert out.exit_code == 1 and out.output.startswith("Error: refusing to listen on non-loopback address")
    assert len(out.output.strip().splitlines()) == 1
    empty = tmp_path / "token"
    empty.write_text("\n")
    out = runner.invoke(main, ["serve", str(tmp_path / "s.vs"), "--port", "0", "--token-file", str(empty)])
    assert out.exit_code == 1 and "empty" in out.output


def test_one_connection_reads_overtake_but_effects_keep_order(filled, tmp_path, sleep_op):
    store, _ids, _ = filled
    with start(store, "unix", tmp_path) as running:
        s = raw_socket(running.address, timeout=30)
        frames = [
            packb({"id": 1, "op": TEST_OP, "args": {"seconds": 1.0}}),  # a slow read, on the reader pool
            packb({"id": 2, "op": "len", "args": {"table": "items"}}),  # a fast read: need not wait for it
            packb({"id": 3, "op": "put", "args": {"table": "items", "ids": ["late"], "columns": {"clicks": [1]}}}),
            packb({"id": 4, "op": "len", "args": {"table": "items"}}),  # after the write: sees it
        ]
        s.sendall(b"".join(struct.pack(">I", len(f)) + f for f in frames))
        answers = [recv_frame(s) for _ in frames]
        assert [a["id"] for a in answers] == [2, 1, 3, 4]
        assert [a["result"] for a in answers] == [100, 1.0, 1, 101]
        s.close()
