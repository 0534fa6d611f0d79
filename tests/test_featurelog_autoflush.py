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


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf"), True, "1", [1]])
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


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
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


def test_the_server_flushes_the_log_in_the_background(shop, tmp_path):
    store, _ = shop
    with start(store, "unix", tmp_path) as running:
        assert store.log.flush_seconds == 1.0  # the sidecar's default
        running.stop()
    with start(store, "unix", tmp_path, log_flush_seconds=None):
        assert store.log.flush_seconds is None
    with start(store, "unix", tmp_path, log_flush_seconds=0.25):
        assert store.log.flush_seconds == 0.25
