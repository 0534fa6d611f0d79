"""Feature log durability: SIGKILL while logging, torn tails, several processes, fork, threads, index rebuild.

The promise under test (docs/feature-logging.md): once a ``log.*`` call has
returned, a process crash loses nothing of it; a crash mid-write leaves at
most a torn frame at the end of that process's segment, which readers skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
from conftest import SCHEMA, sample_columns

import vecstore
from vecstore.featurelog.frames import iter_frames

T0 = 1_767_225_600.0
ROOT = Path(__file__).resolve().parents[1]

# A serving process: logs requests forever and acknowledges each call on
# stdout only after it returned.  "F" lines follow a flush().
CHILD = r"""
import sys, numpy as np, vecstore
path, n, ckpt, tag = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
store = vecstore.open(path)
log = vecstore.FeatureLog(store, seed=1, checkpoint_seconds=ckpt)
rng = np.random.default_rng(sum(map(ord, tag)))
limit = int(sys.argv[5]) if len(sys.argv) > 5 else 10**9
out = sys.stdout
for r in range(limit):
    rid = f"{tag}-{r}"
    cands = [f"item-{i}" for i in rng.integers(0, 500, n)]
    scores = rng.random(n).astype(np.float32)
    log.retrieval(rid, cands, scores, table="items", features=["price", "embedding"], sample=0.05, ts=T0_ + r)
    out.write(f"R {rid} {cands[0]}\n"); out.flush()
    top = list(dict.fromkeys(cands))[:5]
    log.ranking(rid, top, scores[:5], table="items", shown=top[:2], ts=T0_ + r)
    out.write(f"K {rid}\n"); out.flush()
    log.label(rid, cands[0], "click", 1.0, ts=T0_ + r + 1)
    out.write(f"L {rid}\n"); out.flush()
    if r % 5 == 4:
        log.flush()
        out.write(f"F {rid}\n"); out.flush()
if len(sys.argv) > 6:
    out.write("ready\n"); out.flush()
    sys.stdin.read()
store.close()
out.write("done\n"); out.flush()
""".replace("T0_", repr(T0))


@pytest.fixture
def store_path(tmp_path, rng):
    path = tmp_path / "shop.vs"
    with vecstore.open(path, seed=1234) as store:
        items = store.create_table("items", SCHEMA, expected_size=10_000)
        ids, cols = sample_columns(rng, 500)
        items.put(ids, cols)
    return path


def spawn(path: Path, *args: object, stdin: bool = False) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        text=True, env=env, cwd=str(ROOT),
    )


def read_acks(proc: subprocess.Popen, until: int) -> list[str]:
    acks: list[str] = []
    deadline = time.monotonic() + 60
    while len(acks) < until and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"child died: {proc.stderr.read()}")
        acks.append(line.split())
    return acks


def log_and_die(store_path: Path, n: int, ids: str, sample: str) -> None:
    """A process logs ``n`` requests (retrieval with ``ids``, a click on ids[0]) and dies before any checkpoint."""
    child = (
        "import os, sys, numpy as np, vecstore\n"
        "store = vecstore.open(sys.argv[1])\n"
        "log = vecstore.FeatureLog(store, checkpoint_seconds=1e9)\n"
        f"for r in range({n}):\n"
        f"    ids = {ids}\n"
        f"    log.retrieval(f'r{{r}}', ids, np.ones(len(ids)), table='items', {sample}, ts={T0} + r)\n"
        f"    log.label(f'r{{r}}', ids[0], 'click', 1.0, ts={T0} + r)\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", child, str(store_path)], check=True, timeout=120)


def export_table(store, path):
    res = store.log.export(path)
    return ds.dataset(res, format="parquet", partitioning="hive").to_table().to_pylist()


def check_acknowledged(store, acks, out: Path) -> dict:
    rows = export_table(store, out)
    by = {}
    for r in rows:
        by.setdefault((r["request_id"], r["stage"]), []).append(r)
    # Nothing torn: every logged call is whole, whether or not it was acknowledged.
    for (rid, stage), rs in by.items():
        assert len(rs) == (2000 if stage == "retrieval" else 5), (rid, stage, len(rs))
        assert sorted(r["position"] for r in rs) == list(range(len(rs)))
    # Nothing acknowledged is lost.
    for ack in acks:
        kind, rid = ack[0], ack[1] if len(ack) > 1 else None
        if kind == "R":
            assert (rid, "retrieval") in by, rid
            assert by[(rid, "retrieval")][0]["item"] == ack[2] or any(r["item"] == ack[2] for r in by[(rid, "retrieval")])
        elif kind == "K":
            assert (rid, "ranking") in by, rid
            assert [r["shown"] for r in sorted(by[(rid, "ranking")], key=lambda r: r["position"])] == [True, True, False, False, False]
        elif kind == "L":
            assert any(r["label_click"] == 1.0 for r in by[(rid, "ranking")]), rid
    return by


@pytest.mark.parametrize("checkpoint_seconds", [0.02, 3600.0])
def test_sigkill_while_logging_loses_nothing_acknowledged(store_path, tmp_path, checkpoint_seconds):
    proc = spawn(store_path, 2000, checkpoint_seconds, "kid")
    acks = read_acks(proc, 90)
    time.sleep(0.013)  # land the kill anywhere, mid-write included
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    acks += [line.split() for line in proc.stdout.read().splitlines()]  # acknowledged before the kill, still in the pipe
    proc.stdout.close()
    proc.stderr.close()
    with vecstore.open(store_path) as store:
        log = store.log
        by = check_acknowledged(store, acks, tmp_path / "out1")
        assert log.verify() == []
        # The index caught up on the dead segment exactly once: stats agree with the export.
        ranking_rows = sum(len(rs) for (rid, st), rs in by.items() if st == "ranking")
        st = log.stats(stage="ranking", feature="price")
        assert st.count + st.missing == ranking_rows
        info = log.info()
        assert info.ranking_calls == sum(1 for (_, s) in by if s == "ranking")
        report = log.compact()
        assert report.torn_bytes_dropped >= 0 and log.verify() == []
        seg = next((store.path / "logs" / "segments").glob("*.vsl"))
        assert seg.stat().st_size == sum(f.end - f.offset for f in iter_frames(seg))  # no torn tail left
        check_acknowledged(store, acks, tmp_path / "out2")
        assert log.stats(stage="ranking", feature="price").count == st.count
        # Logging goes on in a new segment.
        log.ranking("after", ["item-1"], [1.0], table="items", ts=T0)
        assert log.info().ranking_calls == info.ranking_calls + 1


def test_torn_and_damaged_frames(store_path, tmp_path):
    with vecstore.open(store_path) as store:
        for r in range(6):
            store.log.retrieval(f"r{r}", [f"item-{i}" for i in range(300)], np.ones(300), table="items", sample=0.1, ts=T0 + r)
        before = export_table(store, tmp_path / "before")
    seg = next((store_path / "logs" / "segments").glob("*.vsl"))
    frames = list(iter_frames(seg))
    last = frames[-1]
    data = seg.read_bytes()
    half = (last.end - last.offset) // 2
    with open(seg, "ab") as f:  # a crash in the middle of appending a copy of the last frame
        f.write(data[last.offset : last.offset + half])
    with vecstore.open(store_path) as store:
        assert export_table(store, tmp_path / "torn") == before
        assert store.log.verify() == []
        assert store.log.compact().torn_bytes_dropped == half
        assert seg.stat().st_size == len(data)
    # Damage inside an early frame: the frames after it cannot be read, and verify says so.
    calls = [f for f in frames if f.kind == 1]
    target = calls[1].offset + 100  # inside r1
    damaged = bytearray(data)
    damaged[target] ^= 0xFF
    seg.write_bytes(bytes(damaged))
    shutil.rmtree(store_path / "logs" / "index")
    with vecstore.open(store_path) as store:
        problems = store.log.verify()
        assert len(problems) == 1 and "checksum" in problems[0] and "good frames follow" in problems[0]
        assert {r["request_id"] for r in export_table(store, tmp_path / "damaged")} == {"r0"}
        # ... and the export says what it left out, rather than being silently shorter.
        result = store.log.export(tmp_path / "damaged2")
        assert len(result.problems) == 1 and "not in the export" in result.problems[0]
    with vecstore.open(store_path) as store:  # a torn tail alone is routine: no problem reported
        seg.write_bytes(data + data[last.offset : last.offset + half])
        shutil.rmtree(store_path / "logs" / "index")
    with vecstore.open(store_path) as store:
        assert store.log.export(tmp_path / "torn2").problems == []


@pytest.mark.parametrize("via", ["library", "cli"])
def test_compact_repairs_a_segment_damaged_in_the_middle(store_path, tmp_path, via):
    # A writer dies before its last checkpoint, and a frame in the part the
    # index never covered is damaged: compact must keep the good frames after
    # it (it used to cut the file at the damage, as if it were a torn tail).
    log_and_die(store_path, 8, "[f'item-{i}' for i in range(40)]", "sample=4")
    seg = next((store_path / "logs" / "segments").glob("*.vsl"))
    calls = [f for f in iter_frames(seg) if f.kind == 1]  # retrievals
    data = bytearray(seg.read_bytes())
    damaged = calls[2]
    data[damaged.offset + 60] ^= 0xFF  # inside r2's payload: its checksum fails
    seg.write_bytes(bytes(data))
    with vecstore.open(store_path) as store:
        assert any("good frames follow" in p for p in store.log.verify())
        # prune leaves such a segment alone (its rewrite would stop at the damage);
        # its watermark still hides r0 from now on.
        assert store.log.prune(before=T0 + 1).segments_busy == 1
        assert seg.stat().st_size == len(data)
        if via == "library":
            report = store.log.compact()
            assert report.segments_repaired == 1 and report.torn_bytes_dropped == 0
            assert report.damaged_bytes_dropped == damaged.end - damaged.offset
    if via == "cli":  # vecstore compact needs the store to itself
        from click.testing import CliRunner
        from vecstore.cli.main import main

        out = CliRunner().invoke(main, ["compact", str(store_path), "--quiet"])
        assert out.exit_code == 0, out.output
        assert "repaired 1 damaged segment(s)" in out.output
    with vecstore.open(store_path) as store:
        assert store.log.verify() == []
        rows = export_table(store, tmp_path / "after")
        kept = {f"r{r}" for r in range(8)} - {"r0", "r2"}
        assert {r["request_id"] for r in rows} == kept
        # The frames after the damage reached the index: their labels join, their rows count in stats.
        assert {r["request_id"] for r in rows if r["label_click"] == 1.0} == kept
        assert store.log.stats(stage="retrieval", feature="price").count == 7 * 4
        assert store.log.compact().segments_repaired == 0  # nothing left to repair


# What is damaged: (frame kind, byte flipped in it).
VICTIMS = {
    "header": (0, 40), "header length": (0, 5), "schema": (4, 40), "dictionary": (5, 40), "first call": (1, 40),
    "first label": (3, 40), "schema, table dropped": (4, 40),
}


@pytest.mark.parametrize("victim", list(VICTIMS))
def test_compact_repairs_damage_before_the_first_record_and_restores_lost_declarations(store_path, tmp_path, victim):
    # Damage ahead of every record the index had counted (a writer that died
    # before its first checkpoint) made compact delete the whole segment, good
    # frames and all, and export skipped it without a word.  Damage to a schema
    # or dictionary frame also leaves later calls undecodable unless the repair
    # writes those declarations again (from the store, which still knows them).
    log_and_die(store_path, 6, "[f'item-{i}' for i in range(r * 5, r * 5 + 5)]", "sample=1.0")
    seg = next((store_path / "logs" / "segments").glob("*.vsl"))
    frames = list(iter_frames(seg))
    kind, byte = VICTIMS[victim]
    hit = next(f for f in frames if f.kind == kind)
    assert hit.offset < min(f.offset for f in frames if f.kind == 1) + 1 or kind == 3  # ahead of every counted record
    data = bytearray(seg.read_bytes())
    data[hit.offset + byte] ^= 0xFF
    seg.write_bytes(bytes(data))
    if victim == "header":
        from click.testing import CliRunner
        from vecstore.cli.main import main

        out = CliRunner().invoke(main, ["verify", str(store_path)])
        assert out.exit_code == 1 and "`vecstore compact` repairs damaged log segments" in out.output
        assert "--repair" not in out.output.splitlines()[-1]  # it cannot fix log damage: not suggested
        out = CliRunner().invoke(main, ["verify", str(store_path), "--repair"])
        assert out.exit_code == 1 and "from a backup" not in out.output.splitlines()[-1]
        out = CliRunner().invoke(main, ["logs", "export", str(store_path), str(tmp_path / "cli")])
        assert "nothing readable: see the warnings above" in out.output, out.output
    with vecstore.open(store_path) as store:
        assert any("good frames follow" in p and "vecstore compact" in p for p in store.log.verify())
        res = store.log.export(tmp_path / "before")
        assert any("vecstore compact" in p for p in res.problems), "the export says what it could not read"
        if kind == 0:  # not a wrong offset found by following a damaged length
            assert any("at offset 0" in p for p in res.problems), res.problems
        if victim == "schema, table dropped":
            store.drop_table("items")
        report = store.log.compact()
        assert report.segments_repaired == 1 and report.segments_removed == 0
        assert report.damaged_bytes_dropped == hit.end - hit.offset
        assert store.log.verify() == []
        if victim == "schema, table dropped":
            # Without the table nothing can decode the calls: they go, the labels stay.
            assert store.log.info().retrieval_calls == 0 and store.log.info().labels_logged == 6
            return
        rows = export_table(store, tmp_path / "after")
        lost = {"r0"} if victim == "first call" else set()
        lost_labels = lost | ({"r0"} if victim == "first label" else set())
        assert {r["request_id"] for r in rows} == {f"r{r}" for r in range(6)} - lost
        want = store.table("items").get([r["item"] for r in rows], features=["category", "price"])
        assert [r["category"] for r in rows] == list(want["category"])  # dictionaries restored exactly
        np.testing.assert_array_equal([r["price"] for r in rows], want["price"])
        assert sum(r["label_click"] == 1.0 for r in rows) == 6 - len(lost_labels)
        assert store.log.stats(stage="retrieval", feature="price").count == 5 * (6 - len(lost))


def test_processes_log_concurrently_and_see_each_other(store_path, tmp_path):
    kids = [spawn(store_path, 2000, 0.05, tag, 12) for tag in ("a", "b")]
    acks = [read_acks(k, 12 * 3 + 2 + 1) for k in kids]  # every call, the flushes, "done"
    for k in kids:
        assert k.wait() == 0, k.stderr.read()
        k.stdout.close()
        k.stderr.close()
    live = spawn(store_path, 2000, 3600.0, "c", 3, "wait", stdin=True)  # stays alive, nothing checkpointed
    acks_live = read_acks(live, 3 * 3 + 1)
    with vecstore.open(store_path) as store:
        log = store.log
        by = check_acknowledged(store, acks[0] + acks[1] + acks_live[:-1], tmp_path / "out")
        assert len({rid for rid, _ in by}) == 27
        seen_live = log.stats(stage="ranking", feature="price")
        assert seen_live.count + seen_live.missing == 27 * 5  # the live process's tail, scanned, not absorbed
        assert log.info().live_segments == 1
        live.stdin.close()
        assert live.wait() == 0, live.stderr.read()
        live.stdout.close()
        live.stderr.close()
        after = log.stats(stage="ranking", feature="price")
        assert (after.count, after.missing) == (seen_live.count, seen_live.missing)  # its final checkpoint, counted once
        assert log.info().segments == 3 and log.info().live_segments == 0


def test_fork_and_threads(store_path, tmp_path):
    with vecstore.open(store_path) as store:
        log = store.log
        log.ranking("parent-0", ["item-1", "item-2"], [1.0, 0.5], table="items", ts=T0)
        pid = os.fork()
        if pid == 0:  # the child logs into its own segment, then leaves without running the parent's atexit
            try:
                log.ranking("child-0", ["item-3"], [1.0], table="items", ts=T0)
                log.label("child-0", "item-3", "click", 1.0, ts=T0)
                store.close()
                os._exit(0)
            except BaseException:  # noqa: BLE001 - any failure in the forked child is its exit status
                os._exit(1)
        assert os.waitpid(pid, 0)[1] == 0
        errors: list[BaseException] = []

        def worker(w: int) -> None:
            try:
                for r in range(25):
                    log.retrieval(f"t{w}-{r}", [f"item-{i}" for i in range(100)], np.ones(100), table="items", sample=0.1, ts=T0)
                    log.ranking(f"t{w}-{r}", ["item-1", "item-2"], [1.0, 0.5], table="items", ts=T0)
            except BaseException as e:  # noqa: BLE001 - reported by the assertion below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        log.ranking("parent-1", ["item-4"], [1.0], table="items", ts=T0)
        rows = export_table(store, tmp_path / "out")
        reqs = {(r["request_id"], r["stage"]) for r in rows}
        assert ("child-0", "ranking") in reqs and ("parent-0", "ranking") in reqs and ("parent-1", "ranking") in reqs
        assert sum(1 for rid, st in reqs if rid.startswith("t")) == 200
        assert len(rows) == 2 + 1 + 1 + 100 * 100 + 100 * 2
        assert [r["label_click"] for r in rows if r["request_id"] == "child-0"] == [1.0]
        assert log.verify() == []
        st = log.stats(stage="ranking", feature="price")
        assert st.count + st.missing == 2 + 1 + 1 + 200


def test_index_is_rebuilt_from_the_segments(store_path, tmp_path):
    with vecstore.open(store_path) as store:
        log = store.log
        rng = np.random.default_rng(0)
        for r in range(40):
            log.retrieval(f"r{r}", [f"item-{i}" for i in rng.integers(0, 500, 200)], rng.random(200),
                          table="items", sample=0.2, ts=T0 + r * 600)
            log.label(f"r{r}", "item-1", "click", 1.0, ts=T0 + r * 600)
        before = log.stats(stage="retrieval", feature="price")
        rows = export_table(store, tmp_path / "a")
        log.rebuild_index()
        again = log.stats(stage="retrieval", feature="price")
        assert (again.count, again.weight, again.mean, again.quantiles) == (before.count, before.weight, before.mean, before.quantiles)
    shutil.rmtree(store_path / "logs" / "index")
    with vecstore.open(store_path) as store:
        after = store.log.stats(stage="retrieval", feature="price")
        assert (after.count, after.weight, after.quantiles) == (before.count, before.weight, before.quantiles)
        assert after.mean == pytest.approx(before.mean, rel=1e-12)
        assert export_table(store, tmp_path / "b") == rows
        assert store.log.info().distinct_labels == 40


def test_damage_in_the_indexed_part_is_left_by_prune_and_repaired_by_compact(store_path, tmp_path):
    # Bit rot in frames the index had already read: prune's rewrite used to
    # stop there and drop the good frames after it, and compact (which looked
    # only past the indexed part) left it; the index still counted the lost call.
    with vecstore.open(store_path) as store:
        ids = [f"item-{i}" for i in range(20)]
        for r in range(6):
            store.log.retrieval(f"r{r}", ids[r : r + 4], np.ones(4), table="items", sample=1.0, ts=T0 + r)
    seg = next((store_path / "logs" / "segments").glob("*.vsl"))
    calls = [f for f in iter_frames(seg) if f.kind == 1]
    data = bytearray(seg.read_bytes())
    data[calls[2].offset + 60] ^= 0xFF
    seg.write_bytes(bytes(data))
    with vecstore.open(store_path) as store:
        log = store.log
        assert any("vecstore compact" in p for p in log.verify())
        assert log.prune(before=T0 + 0.5).segments_busy == 1  # left for compact, good frames kept
        assert seg.stat().st_size == len(data)
        report = log.compact()
        assert report.segments_repaired == 1 and report.damaged_bytes_dropped == calls[2].end - calls[2].offset
        assert log.verify() == []
        assert log.info().retrieval_calls == 5  # the index was rebuilt: the lost call no longer counts
        assert log.stats(stage="retrieval", feature="price").count == 5 * 4
        rows = export_table(store, tmp_path / "out")
        assert {r["request_id"] for r in rows} == {"r1", "r3", "r4", "r5"}  # r0 pruned, r2 damaged
        assert log.compact().segments_repaired == 0


def test_damage_in_the_last_indexed_frame_is_cut_and_the_index_rebuilt(store_path):
    with vecstore.open(store_path) as store:
        for r in range(4):
            store.log.retrieval(f"r{r}", ["item-1", "item-2"], np.ones(2), table="items", sample=1.0, ts=T0 + r)
    seg = next((store_path / "logs" / "segments").glob("*.vsl"))
    last = list(iter_frames(seg))[-1]
    assert last.kind == 1  # r3's retrieval
    data = bytearray(seg.read_bytes())
    data[last.offset + 60] ^= 0xFF
    seg.write_bytes(bytes(data))
    with vecstore.open(store_path) as store:
        report = store.log.compact()
        assert report.damaged_bytes_dropped == last.end - last.offset and report.torn_bytes_dropped == 0
        assert seg.stat().st_size == last.offset
        assert store.log.verify() == []
        assert store.log.info().retrieval_calls == 3  # the index was rebuilt: the lost call no longer counts
