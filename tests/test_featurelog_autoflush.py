"""Background flushing of the feature log (``flush_seconds``): it flushes, stops, reports failures, survives fork."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from server_kit import start

import vecstore
from vecstore.featurelog.segments import SegmentWriter

T0 = 1_767_225_600.0
FLUSHER = "vecstore-log-flush"


def flushers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == FLUSHER]


def wait_until(cond, what: str, seconds: float = 10.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def log_one(log: vecstore.FeatureLog, r: int) -> None:
    log.retrieval(f"req-{r}", ["item-1", "item-2", "item-3"], np.array([0.3, 0.2, 0.1]), table="items",
                  sample=1.0, ts=T0 + r)


@pytest.fixture
def fsyncs(monkeypatch):
    """Paths of the segments fsynced, in order (the real fsync still runs)."""
    done: list[str] = []
    real = SegmentWriter.fsync

    def counting(self):
        real(self)
        done.append(self.path.name)

    monkeypatch.setattr(SegmentWriter, "fsync", counting)
    return done


def test_calls_are_fsynced_without_calling_flush(shop, fsyncs):
    store, _ = shop
    # Checkpoints only at flush: the index can only be updated by the flusher.
    log = vecstore.FeatureLog(store, seed=0, flush_seconds=0.05, checkpoint_seconds=1e9)
    assert log.flush_seconds == 0.05
    assert not flushers(), "no thread before anything is logged"
    log_one(log, 0)
    wait_until(lambda: fsyncs, "a background fsync")
    assert len(flushers()) == 1
    # Idle: nothing logged since, so no more fsyncs.
    n = len(fsyncs)
    time.sleep(0.3)
    assert len(fsyncs) == n
    log_one(log, 1)
    wait_until(lambda: len(fsyncs) > n, "the next background fsync")
    # What the flusher wrote is in the index another reader opens.
    log.close()
    assert vecstore.FeatureLog(store).info().retrieval_calls == 2


def test_setting_none_stops_the_thread_and_close_stops_it(shop, fsyncs):
    store, _ = shop
    log = vecstore.FeatureLog(store, seed=0)
    assert log.flush_seconds is None
    log_one(log, 0)
    assert not flushers(), "no background thread unless asked for"
    log.flush_seconds = 0.05  # started at once: a segment is open
    assert len(flushers()) == 1
    wait_until(lambda: fsyncs, "a background fsync")
    log.flush_seconds = None
    assert not flushers()
    n = len(fsyncs)
    log_one(log, 1)
    time.sleep(0.2)
    assert len(fsyncs) == n, "no background fsync after flush_seconds = None"
    log.flush_seconds = 0.05
    log.flush_seconds = 0.1  # retimed: still one thread
    assert len(flushers()) == 1
    log.close()
    assert not flushers()


def test_store_close_stops_the_default_logs_flusher(tmp_path, rng):
    from conftest import SCHEMA, sample_columns

    store = vecstore.open(tmp_path / "s.vs")
    ids, cols = sample_columns(rng, 20)
    store.create_table("items", SCHEMA).put(ids, cols)
    store.log.flush_seconds = 0.05
    log_one(store.log, 0)
    assert len(flushers()) == 1
    store.close()
    assert not flushers()


@pytest.mark.parametrize("bad", [0, -1, 0.001, 1e10, float("nan"), float("inf"), True, "1", [1]])
def test_bad_flush_seconds_are_refused(shop, bad):
    store, _ = shop
    with pytest.raises(vecstore.InvalidValueError, match="flush_seconds"):
        vecstore.FeatureLog(store, flush_seconds=bad)
    log = vecstore.FeatureLog(store, flush_seconds=1.0)
    with pytest.raises(vecstore.InvalidValueError, match="flush_seconds"):
        log.flush_seconds = bad
    assert log.flush_seconds == 1.0, "a refused value changes nothing"
    log.close()


def test_a_failed_background_flush_is_raised_by_the_next_flush(shop, monkeypatch):
    store, _ = shop
    real = SegmentWriter.fsync
    failures = []

    def failing_once(self):
        if not failures:
            failures.append(self.path.name)
            raise OSError(5, "Input/output error")
        real(self)

    monkeypatch.setattr(SegmentWriter, "fsync", failing_once)
    log = vecstore.FeatureLog(store, seed=0, flush_seconds=0.05)
    log_one(log, 0)
    wait_until(lambda: log._flush_error is not None, "the background flush to fail")
    with pytest.raises(vecstore.StorageError, match="background flush .* failed: .*Input/output error") as e:
        log.flush()
    assert "may not be on disk" in str(e.value)
    log.flush()  # reported once; the log goes on
    log_one(log, 1)
    log.close()
    assert vecstore.FeatureLog(store).info().retrieval_calls == 2


def test_a_forked_child_starts_its_own_flusher(shop, fsyncs):
    store, _ = shop
    log = vecstore.FeatureLog(store, seed=0, flush_seconds=0.05)
    log_one(log, 0)
    assert len(flushers()) == 1
    parents = log._seg.path.name
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if its own flusher fsyncs its own segment
        code = 1
        try:
            if not flushers():  # the parent's thread is not copied
                code = 2
                log_one(log, 100)
                mine = log._seg.path.name
                if mine != parents and len(flushers()) == 1:
                    code = 3
                    for _ in range(500):
                        if mine in fsyncs:
                            code = 0
                            break
                        time.sleep(0.01)
            log.close()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    log.close()
    assert vecstore.FeatureLog(store).info().retrieval_calls == 2


def test_the_server_flushes_what_clients_log_in_the_background(shop, tmp_path, fsyncs):
    store, _ = shop
    with start(store, "unix", tmp_path):
        assert store.log.flush_seconds is None  # Server's default leaves the store's setting alone
    store.log.flush_seconds = 5.0
    with start(store, "unix", tmp_path, log_flush_seconds=0):
        assert store.log.flush_seconds is None  # 0: off
    with start(store, "unix", tmp_path, log_flush_seconds=0.05) as running:
        assert store.log.flush_seconds == 0.05
        client = vecstore.connect(running.address)
        client.log.retrieval("req-1", ["item-1", "item-2"], [0.5, 0.4], table="items", sample=1.0)
        wait_until(lambda: fsyncs, "the server's background fsync")  # no flush() from the client
        client.close()


@pytest.mark.parametrize("segment_bytes", [256 << 20, 1], ids=["open-segment", "rotated-segment"])
def test_a_flush_waits_for_a_background_flush_in_progress(shop, monkeypatch, segment_bytes):
    # The user's flush() must not return while the flusher is still fsyncing
    # what the user logged.  With segment_bytes=1 every call rotates, and the
    # flusher fsyncs the finished segment outside the checkpoint lock: flush()
    # used to find the list of finished segments empty and return at once.
    store, _ = shop
    real = os.fsync
    events: list[str] = []
    inside = threading.Event()

    def slow(fd):
        if not inside.is_set() and threading.current_thread().name == FLUSHER:
            events.append("fsync start")
            inside.set()
            time.sleep(0.3)
            real(fd)
            events.append("fsync end")
        else:
            real(fd)

    monkeypatch.setattr(os, "fsync", slow)
    log = vecstore.FeatureLog(store, seed=0, flush_seconds=0.05, segment_bytes=segment_bytes)
    log_one(log, 0)
    assert inside.wait(10), "the background flush did not start"
    log.flush()
    events.append("flush returned")
    assert events.index("flush returned") > events.index("fsync end")
    log.close()


def test_repeated_background_failures_are_reported_once_and_not_nested(shop, monkeypatch, caplog):
    store, _ = shop
    real = SegmentWriter.fsync
    failing = [True]
    calls = []

    def broken(self):
        calls.append(1)
        if failing[0]:
            raise OSError(28, "No space left on device")
        real(self)

    monkeypatch.setattr(SegmentWriter, "fsync", broken)
    log = vecstore.FeatureLog(store, seed=0, flush_seconds=0.02)
    with caplog.at_level("DEBUG", logger="vecstore.featurelog"):
        log_one(log, 0)
        wait_until(lambda: len(calls) >= 4, "several failing background flushes")
        failing[0] = False
        with pytest.raises(vecstore.StorageError) as e:
            log.flush()
    assert str(e.value).count("No space left on device") == 1 and str(e.value).count("background flush") == 1
    assert sum(r.levelname == "ERROR" for r in caplog.records) == 1, "one ERROR per failure reported, not per retry"
    log.flush()  # reported once; the log goes on
    log.close()


def test_rotated_segments_are_fsynced_by_the_flusher(shop, monkeypatch):
    store, _ = shop
    synced: list[int] = []
    real = os.fsync

    def counting(fd):
        synced.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    log = vecstore.FeatureLog(store, seed=0, segment_bytes=1, flush_seconds=0.05)  # a new segment every call
    for r in range(5):
        log_one(log, r)
    wait_until(lambda: not log._unsynced and log._appends == log._flushed_appends, "rotated segments fsynced")
    assert len(synced) >= 5
    log.close()
    assert vecstore.FeatureLog(store).info().retrieval_calls == 5


@pytest.mark.parametrize("round_", range(5))
def test_close_while_other_threads_log_leaves_no_flusher(shop, round_):
    # A call racing with close() either lands before it (and is flushed by
    # it) or raises StoreClosedError; it used to hit the closed segment's fd
    # (EBADF) or start a flusher after close.
    store, _ = shop
    log = vecstore.FeatureLog(store, seed=0, flush_seconds=0.01)
    stop = threading.Event()
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        r = 0
        while not stop.is_set() and r < 100_000:
            try:
                log_one(log, k * 1_000_000 + r)
            except vecstore.StoreClosedError:
                return
            except BaseException as e:  # noqa: BLE001 - collected for the assertion below
                errors.append(e)
                return
            r += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.1)
    log.close()
    stop.set()
    for t in threads:
        t.join(10)
    assert not errors
    assert not flushers()


def test_a_call_that_passed_its_checks_when_close_began_is_refused(shop):
    # Without this, a call caught between its checks and its write started a
    # fresh segment after close() had finished the last one: written, never
    # flushed, its file left open.
    store, _ = shop
    log = vecstore.FeatureLog(store, seed=0)
    log_one(log, 0)
    entered, closed = threading.Event(), threading.Event()
    real_table = log._table

    def slow_table(name, fresh):
        t = real_table(name, fresh)
        if threading.current_thread().name == "racer":
            entered.set()
            closed.wait(10)
        return t

    log._table = slow_table
    outcome: list[BaseException | None] = []

    def racer() -> None:
        try:
            log_one(log, 1)
            outcome.append(None)
        except BaseException as e:  # noqa: BLE001 - inspected below
            outcome.append(e)

    th = threading.Thread(target=racer, name="racer")
    th.start()
    assert entered.wait(10)
    log.close()
    closed.set()
    th.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], vecstore.StoreClosedError)
    assert vecstore.FeatureLog(store).info().retrieval_calls == 1


def test_flush_seconds_on_a_closed_log_or_a_remote_log_is_refused(shop, tmp_path):
    store, _ = shop
    log = vecstore.FeatureLog(store)
    log.close()
    with pytest.raises(vecstore.StoreClosedError):
        log.flush_seconds = 1.0
    assert not flushers()
    with start(store, "unix", tmp_path) as running:
        client = vecstore.connect(running.address)
        # Set on the client object it would silently do nothing.
        with pytest.raises(vecstore.InvalidValueError, match="--log-flush-seconds"):
            client.log.flush_seconds = 0.5
        with pytest.raises(vecstore.InvalidValueError, match="the server's"):
            client.log.flush_seconds  # noqa: B018 - the read is the test
        client.close()
