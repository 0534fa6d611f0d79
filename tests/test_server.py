"""The sidecar server at the protocol level: every op over both transports, pipelining,
security (socket mode, loopback, tokens), limits, malformed and random frames."""

from __future__ import annotations

import os
import socket
import stat
import struct
import threading
import time

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from server_kit import (
    closed_by_peer,
    raw_socket,
    recv_frame,
    request,
    send_frame,
    start,
)
from vecstore.server import Server, start_in_thread
from vecstore.server.ops import OPS
from vecstore.server.protocol import (
    EXT_STR_IDS,
    PROTOCOL_VERSION,
    STR_IDS_MIN,
    decode_ndarray,
    decode_str_ids,
    encode_ndarray,
    encode_str_ids,
    packb,
    unpackb,
)

import vecstore
from vecstore.bloom import BloomFilter


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_every_op_over_both_transports(filled, tmp_path, transport):
    store, ids, cols = filled
    seen = set()
    with start(store, transport, tmp_path) as running:
        s = raw_socket(running.address)

        def ok(op, **args):
            seen.add(op)
            resp = request(s, op, rid=len(seen), **args)
            assert resp["id"] == len(seen) and resp["ok"] is True, resp
            return resp["result"]

        hello = ok("hello")
        assert hello["protocol"] == PROTOCOL_VERSION and hello["version"] == vecstore.__version__
        price = ["price", {"kind": "scalar", "dtype": "f32", "default": None}]
        assert hello["tables"]["items"]["features"][0] == price
        assert set(hello["ops"]) == set(OPS) | {"auth"}
        assert ok("ping") == "pong"
        assert ok("auth", token="unused") is True  # no token configured: a no-op
        assert ok("tables") == ["items"]
        assert ok("schema", table="items")["name"] == "items"
        got = ok("get", table="items", ids=ids[:3] + ["nope"], features=["price", "category", "embedding"])
        assert got["found"].tolist() == [True, True, True, False]
        np.testing.assert_array_equal(got["columns"]["price"][:3], cols["price"][:3])
        assert got["columns"]["category"] == ["books", "toys", "food", None]
        assert got["columns"]["embedding"].shape == (4, 16) and got["present"]["embedding"].tolist()[3] is False
        rec = ok("get", table="items", ids=ids[:2], layout="records")
        assert len(rec["records"]) == 2 * store.table("items").schema.record_size
        assert ok("put", table="items", ids=["new-1", "new-2"], columns={"price": np.array([1.5, 2.5])}) == 2
        assert ok("contains", table="items", ids=["new-1", "zzz"]).tolist() == [True, False]
        assert ok("contains", table="items", ids="new-1") is True
        assert ok("may_contain", table="items", ids=np.array([1, 2])).dtype == np.bool_
        assert ok("len", table="items") == 102
        assert ok("delete", table="items", ids=["new-2"]) == 1
        assert ok("info", table="items")["rows"] == 101
        assert ok("store.info")["tables"][0]["name"] == "items"
        bf, meta = BloomFilter.from_bytes(ok("bloom", table="items")["filter"])
        assert bf.may_contain(store.hash_ids(ids)).all() and meta["table_id"] == 1
        first = ok("scan", table="items", batch_size=40, features=["price"])
        total, handle = len(first["rows"]["ids"]), first["scan"]
        while True:
            page = ok("scan.next", scan=handle)
            if page["done"]:
                break
            total += len(page["rows"]["ids"])
        assert total == 101
        handle = ok("scan", table="items", batch_size=10)["scan"]
        assert ok("scan.close", scan=handle) is None
        assert ok("verify", table="items") == []
        assert ok("rebuild_bloom", table="items")["count"] == 101
        hits = ok("search", table="items", query=cols["embedding"][5], k=3, exact=True)
        assert hits["ids"][0] == ids[5] and hits["batched"] is False
        assert ids[5] not in ok("search_by_id", table="items", id=ids[5], k=3)["ids"]
        hits = ok("search", table="items", query=cols["embedding"][:2], k=2, where={"category": ["==", "toys"]})
        assert hits["batched"] and all(i in ids[1::3] for q in hits["ids"] for i in q)
        assert ok("rebuild_index", table="items", feature="embedding")["vectors"] == 100  # new-1 has no vector
        schema = ok("create_table", name="other", features=[["x", {"kind": "scalar", "dtype": "i32"}]])
        assert schema["table_id"] == 2
        assert ok("drop_table", name="other") is None
        assert ok("flush") is None
        t0 = 1_767_225_600.0
        assert ok("log.retrieval", args=["r1", ids[:10], np.linspace(1, 0, 10)],
                  kwargs={"table": "items", "sample": 3, "ts": t0}) == 3
        assert ok("log.ranking", args=["r1", ids[:4], [4.0, 3.0, 2.0, 1.0]],
                  kwargs={"table": "items", "shown": ids[:2], "ts": t0 + 1}) == 4
        assert ok("log.label", args=["r1", ids[0], "click"], kwargs={"ts": t0 + 2}) is None
        assert ok("log.flush") is None
        assert ok("log.info")["rows"] == {"retrieval": 10, "ranking": 4}
        assert ok("log.verify") == []
        assert ok("log.stats", kwargs={"stage": "ranking", "feature": "price"})["quantiles"]["0.5"] > 0
        window = [[t0, t0 + 3600], [t0 + 3600, t0 + 7200]]
        drift = ok("log.drift", args=[["price"]], kwargs={"baseline": window[0], "current": window[1]})
        assert drift["stage"] == "ranking"
        assert ok("log.export", args=[str(tmp_path / "export")])["rows"] == 14
        assert ok("log.rebuild_index") is None
        assert ok("log.prune", kwargs={"before": t0 - 3600})["segments_removed"] == 0
        assert "bytes_after" in ok("log.compact")
        stats = ok("stats")
        assert stats["requests"] >= len(seen) - 1 and stats["connections"] == 1
        assert stats["ops"]["get"]["requests"] == 2 and stats["ops"]["get"]["p99_us"] > 0
        assert seen >= set(OPS)  # every registered op was exercised
        s.close()
    assert not os.path.exists(tmp_path / "vs.sock")  # removed on shutdown


def test_pipelined_requests_are_answered_in_order(filled, tmp_path):
    store, ids, _ = filled
    with start(store, "unix", tmp_path) as running:
        s = raw_socket(running.address)
        frames = b""
        for i in range(200):
            op = ("get", "put", "ping", "len")[i % 4]
            args = {"table": "items", "ids": [f"p-{i}"], "columns": {"clicks": [i]}} if op == "put" else {
                "table": "items", "ids": ids[i % 100 : i % 100 + 5]}
            body = packb({"id": i, "op": op, "args": args})
            frames += struct.pack(">I", len(body)) + body
        s.sendall(frames)
        answers = [recv_frame(s) for _ in range(200)]
        assert [a["id"] for a in answers] == list(range(200))
        assert all(a["ok"] for a in answers)
        # A read after a write on the same connection sees it.
        assert [a["result"] for a in answers[3::4]][:3] == [101, 102, 103]
        s.close()


def test_unix_socket_is_private_and_replaces_a_stale_one(store, tmp_path):
    path = tmp_path / "vs.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # a socket file nobody listens on, as a crashed server leaves
    stale.close()
    with start_in_thread(store, unix=str(path)) as running:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert vecstore.connect(running.address).ping() > 0
        with pytest.raises(vecstore.VecstoreError, match="already listening"):
            start_in_thread(store, unix=str(path))
    (tmp_path / "file").write_text("x")
    with pytest.raises(vecstore.VecstoreError, match="not a socket"):
        start_in_thread(store, unix=str(tmp_path / "file"))
    gone = tmp_path / "no-such-dir" / "vs.sock"  # was a bare "No such file or directory"
    with pytest.raises(vecstore.VecstoreError, match=f"cannot listen on the Unix socket {gone}") as e:
        start_in_thread(store, unix=str(gone))
    assert "create its directory first" in e.value.hint


def test_refuses_a_non_loopback_address_without_a_token(store):
    with pytest.raises(vecstore.VecstoreError, match="non-loopback"):
        Server(store, host="0.0.0.0")
    Server(store, host="0.0.0.0", token="s3cret")  # allowed with a token (not started here)
    Server(store, host="localhost")
    with pytest.raises(vecstore.VecstoreError, match="empty"):
        Server(store, token="")


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_token_authentication(filled, tmp_path, transport, caplog):
    store, ids, _ = filled
    caplog.set_level("ERROR", logger="asyncio")
    with start(store, transport, tmp_path, token="s3cret-token", auth_timeout=0.5) as running:
        # Before authenticating, anything but auth earns one error and a closed connection.
        s = raw_socket(running.address)
        resp = request(s, "get", table="items", ids=ids[:1])
        assert resp["ok"] is False and resp["error"]["type"] == "AuthenticationError"
        assert "result" not in resp and closed_by_peer(s)
        s = raw_socket(running.address)
        assert request(s, "auth", token="wrong")["error"]["type"] == "AuthenticationError"
        assert closed_by_peer(s)
        s = raw_socket(running.address)
        assert request(s, "auth", token="s3cret-token")["result"] is True
        assert request(s, "len", table="items")["result"] == 100
        s.close()
        # A connection that never authenticates is dropped after auth_timeout.
        idle = raw_socket(running.address)
        assert closed_by_peer(idle)
        with vecstore.connect(running.address, token="s3cret-token") as client:
            assert client.table("items").get(ids[:2]).found.all()
        with pytest.raises(vecstore.AuthenticationError):
            vecstore.connect(running.address)
        with pytest.raises(vecstore.AuthenticationError):
            vecstore.connect(running.address, token="nope")
        assert vecstore.connect(running.address, token="s3cret-token").stats().connections_rejected >= 4
    # Refusing a client is routine: no traceback in the server's log.
    assert not [r for r in caplog.records if r.name == "asyncio"], [r.getMessage() for r in caplog.records]


def test_frame_over_the_limit_is_refused_without_reading_it(filled, tmp_path):
    store, ids, _ = filled
    with start(store, "unix", tmp_path, max_frame_bytes=4096) as running:
        s = raw_socket(running.address)
        s.sendall(struct.pack(">I", 2**31))  # announces 2 GiB, sends none of it
        resp = recv_frame(s)
        assert resp["id"] is None and resp["error"]["type"] == "ProtocolError" and "limit" in resp["error"]["message"]
        assert closed_by_peer(s)
        with vecstore.connect(running.address) as client:
            items = client.table("items")
            with pytest.raises(vecstore.ProtocolError, match="nothing was sent"):  # the client knows the limit
                items.put([f"x{i}" for i in range(1000)], {"clicks": np.arange(1000)})
            assert len(items) == 100 and items.get(ids[:3]).found.all()  # others keep working


def test_malformed_requests_get_errors_and_the_connection_goes_on(filled, tmp_path):
    store, _ids, _ = filled
    with start(store, "tcp", tmp_path) as running:
        s = raw_socket(running.address)
        cases = [
            (b"\xc1", "ProtocolError"),  # never-used msgpack byte
            (b"\x92\x01", "ProtocolError"),  # truncated array
            (packb([1, 2, 3]), "BadRequest"),
            (packb({"id": 1, "op": 5}), "BadRequest"),
            (packb({"id": 1, "op": "get", "args": [1]}), "BadRequest"),
            (packb({"id": 1, "op": "nope"}), "BadRequest"),
            (packb({"id": 1, "op": "get", "args": {"table": 7}}), "BadRequest"),
            (packb({"id": 1, "op": "scan.next", "args": {"scan": 99}}), "BadRequest"),
            (msgpack.packb({"id": 1, "op": "len", "args": {"table": msgpack.ExtType(9, b"x")}}), "ProtocolError"),
            (msgpack.packb({"id": 1, "op": "len", "args": {"x": msgpack.ExtType(1, b"\x02|O\x00")}}),
             "ProtocolError"),  # an object array
            (msgpack.packb({1: 2}), "ProtocolError"),  # non-string map key
            (packb({"id": 1, "op": "get", "args": {"table": "nope", "ids": ["a"]}}), "TableNotFoundError"),
            (packb({"id": 1, "op": "get", "args": {"table": "items", "ids": [1.5]}}), "InvalidIdError"),
            (packb({"id": 1, "op": "get", "args": {"table": "items", "ids": ["a"], "layout": "rows"}}), "BadRequest"),
            # a missing required argument is named, not passed on as None
            (packb({"id": 1, "op": "get", "args": {"table": "items"}}), "BadRequest"),
            (packb({"id": 1, "op": "put", "args": {"table": "items", "ids": ["a"]}}), "BadRequest"),
            (packb({"id": 1, "op": "search", "args": {"table": "items"}}), "BadRequest"),
            (packb({"id": 1, "op": "drop_table", "args": {}}), "BadRequest"),
            # a numpy Generator cannot travel
            (packb({"id": 1, "op": "log.retrieval", "args": {"args": ["r", ["a"], [1.0]],
                                                              "kwargs": {"table": "items", "rng": 1}}}), "BadRequest"),
            # dtypes outside the documented set, and a bool that is neither 0 nor 1
            (msgpack.packb({"id": 1, "op": "len", "args": {"x": msgpack.ExtType(1, b"\x04<f16\x01" + bytes(8) + bytes(2) + bytes(16))}}),
             "ProtocolError"),
            (msgpack.packb({"id": 1, "op": "len", "args": {"x": msgpack.ExtType(1, b"\x03|b1\x01" + (1).to_bytes(8, "big") + bytes(3) + b"\x02")}}),
             "ProtocolError"),
        ]
        for body, kind in cases:
            send_frame(s, body)
            resp = recv_frame(s)
            assert resp["ok"] is False and resp["error"]["type"] == kind, (body, resp)
        assert request(s, "len", table="items")["result"] == 100
        s.close()


def test_a_request_without_a_usable_id_is_refused_unrun(filled, tmp_path):
    # The client could not match its answer (pipelined reads may answer out of
    # order), so the server must not apply it.
    store, ids, _ = filled
    with start(store, "unix", tmp_path) as running:
        s = raw_socket(running.address)
        for rid in (None, 1.5, [1], True):
            body = {"op": "delete", "args": {"table": "items", "ids": ids[:1]}}
            if rid is not None:
                body["id"] = rid
            send_frame(s, packb(body))
            resp = recv_frame(s)
            assert resp["id"] is None and resp["error"]["type"] == "BadRequest", resp
        assert request(s, "len", table="items")["result"] == 100  # nothing was deleted
        s.close()


def test_before_authenticating_a_malformed_frame_is_refused_like_any_other(filled, tmp_path):
    store, _ids, _ = filled
    with start(store, "unix", tmp_path, token="s3cret-token") as running:
        for body in (b"\xc1", packb([1, 2]), packb({"op": "auth", "args": {"token": "s3cret-token"}})):
            s = raw_socket(running.address)
            send_frame(s, body)
            resp = recv_frame(s)
            assert resp["error"]["type"] == "AuthenticationError", (body, resp)
            assert closed_by_peer(s)


def test_a_second_auth_must_carry_the_right_token_too(filled, tmp_path):
    store, _ids, _ = filled
    with start(store, "unix", tmp_path, token="s3cret-token") as running:
        s = raw_socket(running.address)
        assert request(s, "auth", token="s3cret-token")["result"] is True
        assert request(s, "auth", token="s3cret-token")["result"] is True
        assert request(s, "auth", token="wrong")["error"]["type"] == "AuthenticationError"
        assert closed_by_peer(s)


def _random_request(rng: np.random.Generator, ids: list[str]) -> bytes:
    """A random body: garbage, a damaged real request, or a well-formed map of random values."""
    ops = sorted(OPS) + ["auth", "nope", ""]
    values = [None, True, -1, 0, 2**63, 1.5, float("nan"), "", "items", "price", b"\x00\xff", [], {}, ids[:3],
              [1.5], [None], {"price": [1.0]}, {"price": "x"}, np.arange(3), np.zeros((2, 16), np.float32),
              ["==", "books"], {"category": ["in", ["books"]]}, [[1, [2, [3]]]], "x" * 300]
    kind = rng.integers(0, 4)
    if kind == 0:
        return rng.bytes(int(rng.integers(0, 200)))
    if kind == 1:
        body = bytearray(packb({"id": 1, "op": "get", "args": {"table": "items", "ids": ids[:5]}}))
        for _ in range(int(rng.integers(1, 6))):
            body[int(rng.integers(0, len(body)))] = int(rng.integers(0, 256))
        return bytes(body)
    keys = ["table", "ids", "id", "columns", "features", "raw", "layout", "query", "k", "where", "among", "name",
            "batch_size", "scan", "token", "exact", "ef", "feature", "table_id", "expected_size"]
    args = {str(rng.choice(keys)): values[int(rng.integers(0, len(values)))] for _ in range(int(rng.integers(0, 6)))}
    if kind == 2:
        args["table"] = "items"
    req = {"id": values[int(rng.integers(0, len(values)))] if rng.random() < 0.2 else int(rng.integers(0, 99)),
           "op": str(rng.choice(ops)), "args": args}
    try:
        return packb(req)
    except (TypeError, ValueError, OverflowError):
        return b"\xc1"


def test_fuzz_random_frames_never_crash_the_server(filled, tmp_path):
    store, ids, cols = filled
    rng = np.random.default_rng(0)
    with start(store, "unix", tmp_path, max_frame_bytes=1 << 16) as running:
        healthy = vecstore.connect(running.address)
        items = healthy.table("items")
        s = raw_socket(running.address)
        answered = 0
        for i in range(600):
            body = _random_request(rng, ids)
            try:
                if rng.random() < 0.02:
                    s.sendall(struct.pack(">I", (1 << 16) + 1))  # over the limit: refused, connection closed
                else:
                    send_frame(s, body)
                resp = recv_frame(s)
            except (ConnectionError, OSError):
                s.close()
                s = raw_socket(running.address)
                continue
            assert isinstance(resp, dict) and resp.get("ok") in (True, False)
            if resp["ok"] is False:
                assert resp["error"]["type"] != "InternalError", resp["error"]
            answered += 1
            if i % 50 == 0:
                np.testing.assert_array_equal(items.get(ids[:10])["price"], cols["price"][:10])
        s.close()
        assert answered > 500
        rows = items.get(ids)
        assert rows.found.all() and healthy.ping() > 0
        assert items.verify() == []
        healthy.close()


@settings(max_examples=60, deadline=None)
@given(
    dtype=st.sampled_from(["<f4", "<f2", "<f8", "|b1", "|u1", "|i1", "<i8", "<u8", ">i4", "<U3", "|S2"]),
    shape=st.lists(st.integers(0, 5), min_size=0, max_size=3),
)
def test_ndarray_extension_round_trips_exactly(dtype, shape):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 100, size=shape).astype(dtype)
    b = unpackb(packb({"a": a}))["a"]
    assert b.dtype == a.dtype and b.shape == a.shape and b.flags.aligned
    np.testing.assert_array_equal(a, b)
    raw = encode_ndarray(a).data
    damaged = [raw[:0], raw[:1], raw[:5], raw + b"\x00"] + ([raw[:-1]] if a.size else [])
    for bad in damaged:
        with pytest.raises(vecstore.ProtocolError):
            decode_ndarray(bad)


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.text(max_size=8), min_size=STR_IDS_MIN, max_size=80))
def test_str_ids_extension_round_trips_exactly(ids):
    packed = encode_str_ids(ids)
    if any("\0" in x for x in ids) or any("\ud800" <= c <= "\udfff" for x in ids for c in x):
        assert packed is None  # would split differently, or cannot encode: sent as a msgpack array
        return
    assert packed is not None and packed.code == EXT_STR_IDS
    back = unpackb(packb({"ids": packed}))["ids"]
    assert list(back) == ids and all(type(x) is str for x in back)
    assert back.utf8 == [x.encode("utf-8") for x in ids]
    h = vecstore.hash_ids
    np.testing.assert_array_equal(h(back, seed=7), h(list(ids), seed=7))


def test_str_ids_extension_is_only_for_large_all_str_batches():
    assert encode_str_ids(["a"] * (STR_IDS_MIN - 1)) is None
    assert encode_str_ids(["a"] * (STR_IDS_MIN - 1) + [1]) is None
    assert encode_str_ids(["a"] * (STR_IDS_MIN - 1) + [b"b"]) is None
    assert encode_str_ids(["a"] * STR_IDS_MIN) is not None
    with pytest.raises(vecstore.ProtocolError, match="not UTF-8"):
        decode_str_ids(b"ok\x00\xff\xfe")


def test_str_ids_extension_over_the_socket(filled, tmp_path):
    store, ids, _ = filled
    with start(store, "unix", tmp_path) as running:
        s = raw_socket(running.address)
        want = [*ids[:40], "ghost"]
        resp = request(s, "contains", table="items", ids=msgpack.ExtType(EXT_STR_IDS, "\0".join(want).encode()))
        assert resp["ok"], resp
        assert resp["result"].tolist() == [True] * 40 + [False]
        # Malformed: an error frame, and the connection goes on.
        resp = request(s, "contains", rid=2, table="items", ids=msgpack.ExtType(EXT_STR_IDS, b"\xff" * 40))
        assert not resp["ok"] and resp["error"]["type"] == "ProtocolError" and "not UTF-8" in resp["error"]["message"]
        assert request(s, "ping", rid=3)["ok"]
        s.close()


def test_read_only_server_refuses_writes(filled, tmp_path):
    store, ids, _ = filled
    with start(store, "unix", tmp_path, read_only=True) as running, vecstore.connect(running.address) as client:
        items = client.table("items")
        with pytest.raises(vecstore.ReadOnlyError):
            items.put(["x"], {"price": [1.0]})
        with pytest.raises(vecstore.ReadOnlyError):
            client.create_table("t", {"x": vecstore.Scalar()})
        assert items.get(ids[:5]).found.all() and items.verify() == []
        assert client.read_only and client.stats().read_only


def test_max_connections(filled, tmp_path):
    store, _, _ = filled
    with start(store, "unix", tmp_path, max_connections=2) as running:
        a, b = raw_socket(running.address), raw_socket(running.address)
        assert request(a, "ping")["ok"] and request(b, "ping")["ok"]
        c = raw_socket(running.address)
        resp = recv_frame(c)
        assert resp["ok"] is False and "too many connections" in resp["error"]["message"]
        assert closed_by_peer(c)
        a.close()
        for _ in range(200):  # the slot frees once the server sees the close
            d = raw_socket(running.address)
            if request(d, "ping").get("ok"):
                break
            d.close()
        else:
            pytest.fail("the freed connection slot was never reused")
        b.close()
        d.close()


def test_a_stalled_client_does_not_stall_others(filled, tmp_path):
    store, ids, _ = filled
    with start(store, "unix", tmp_path, stall_timeout=1.0) as running:
        stalled = raw_socket(running.address)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        body = packb({"id": 1, "op": "get", "args": {"table": "items", "ids": ids * 20, "layout": "columns"}})
        frames = (struct.pack(">I", len(body)) + body) * 60  # ~12 MB of answers it never reads
        sender = threading.Thread(target=_send_quietly, args=(stalled, frames), daemon=True)
        sender.start()
        with vecstore.connect(running.address) as client:
            for _ in range(400):  # until the server is busy filling the stalled client's buffers
                if client.stats().ops.get("get", None) and client.stats().ops["get"].requests >= 10:
                    break
                time.sleep(0.01)
            items = client.table("items")
            for _ in range(100):
                assert items.get(ids[:10]).found.all()
            for _ in range(1000):  # dropped after stall_timeout; bounded wait
                if client.stats().connections == 1:
                    break
                time.sleep(0.01)
            else:
                pytest.fail("the stalled client was never dropped")
        sender.join(30)
    stalled.close()


def _send_quietly(s: socket.socket, data: bytes) -> None:
    try:
        s.sendall(data)
    except OSError:
        pass


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"\xc1", "starts no msgpack value"),
        (b"\x83\xa2id", "truncated"),
        (b"\x92\x01", "truncated"),
        (b"\x01\x02", "exactly one msgpack value"),
        (msgpack.packb(msgpack.ExtType(1, b"")), "shorter than its header"),
    ],
)
def test_malformed_bodies_are_explained(body, words):
    # A client author reading the error should learn what is wrong with the frame.
    with pytest.raises(vecstore.ProtocolError, match=words):
        unpackb(body)
