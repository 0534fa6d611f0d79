"""Feature log retention: prune(before=t), compact(), segment rotation."""

from __future__ import annotations

import os

import numpy as np
import pyarrow.dataset as ds

import vecstore
from vecstore.featurelog.segments import SegmentWriter

T0 = 1_767_225_600.0
HOUR = 3600.0



def fill(log, hours: int, per_hour: int = 10) -> None:
    rng = np.random.default_rng(0)
    for h in range(hours):
        for r in range(per_hour):
            rid = f"h{h}-{r}"
            ts = T0 + h * HOUR + r
            log.retrieval(rid, [f"item-{i}" for i in rng.integers(0, 500, 500)], rng.random(500), table="items", sample=0.05, ts=ts)
            log.ranking(rid, ["item-1", "item-2"], [1.0, 0.5], table="items", ts=ts)
            log.label(rid, "item-1", "click", 1.0, ts=ts + 1)


def segment_bytes(store) -> int:
    return sum(p.stat().st_size for p in (store.path / "logs" / "segments").glob("*.vsl"))


def test_prune_deletes_and_rewrites_segments_and_reclaims_space(shop_store, tmp_path):
    log = vecstore.FeatureLog(shop_store, segment_bytes=100_000)  # several segments
    fill(log, 6)
    segs_before = len(list((shop_store.path / "logs" / "segments").glob("*.vsl")))
    assert segs_before >= 4
    size_before = segment_bytes(shop_store)
    report = log.prune(before=T0 + 3 * HOUR)
    assert report.segments_removed >= 1 and report.segments_busy == 0
    assert report.bytes_after == segment_bytes(shop_store) < size_before
    assert report.bytes_reclaimed == size_before - report.bytes_after
    assert report.bytes_reclaimed > 0.4 * size_before
    assert report.stats_buckets_removed > 0 and report.labels_removed == 30
    res = log.export(tmp_path / "out")
    tbl = ds.dataset(res, format="parquet", partitioning="hive").to_table()
    kept = set(tbl["request_id"].to_pylist())
    assert kept == {f"h{h}-{r}" for h in range(3, 6) for r in range(10)}
    assert all(v == 1.0 for v, item in zip(tbl["label_click"].to_pylist(), tbl["item"].to_pylist()) if item == "item-1")
    st = log.stats(stage="ranking", feature="price")
    assert st.count == 3 * 10 * 2 and st.start is None
    info = log.info()
    assert info.pruned_before == T0 + 3 * HOUR and info.first_ts >= T0 + 3 * HOUR
    assert info.ranking_calls == 30 and info.retrieval_calls == 30
    assert log.verify() == []
    # Logging continues; an older prune never lowers the watermark.
    log.ranking("new", ["item-3"], [1.0], table="items", ts=T0 + 7 * HOUR)
    assert log.prune(before=T0).before == T0
    assert log.info().pruned_before == T0 + 3 * HOUR
    assert log.info().ranking_calls == 31


def test_prune_straddling_bucket_keeps_stats_whole(shop_store):
    log = shop_store.log
    fill(log, 2)
    log.prune(before=T0 + HOUR + 5)  # inside the second hour
    st = log.stats(stage="ranking", feature="price")
    assert st.count == 10 * 2  # the straddling bucket's summary is kept whole
    assert log.info().ranking_calls == 5  # records at ts < before are gone from the segments


def test_prune_leaves_a_live_segment_of_another_writer(shop_store, tmp_path):
    writer = vecstore.FeatureLog(shop_store)  # a second writer in this process: its segment stays live
    fill(writer, 2)
    report = shop_store.log.prune(before=T0 + HOUR)
    assert report.segments_busy == 1 and report.segments_removed == 0
    res = shop_store.log.export(tmp_path / "out")
    assert res.calls == 20  # hidden behind the watermark though still on disk
    writer.close()
    report = shop_store.log.prune(before=T0 + HOUR)
    assert report.segments_rewritten == 1 and report.records_removed == 30
    assert shop_store.log.export(tmp_path / "out2").calls == 20


def test_compact_cuts_torn_tails_and_drops_empty_segments(shop_store):
    log = vecstore.FeatureLog(shop_store)
    fill(log, 1)
    log.close()
    seg_dir = shop_store.path / "logs" / "segments"
    SegmentWriter.create(seg_dir, {"store": shop_store.uuid}).close()  # a writer that died before its first call
    (seg_dir / ".0000-stale.vsl.tmp").write_bytes(b"junk")  # a crash while creating a segment
    segs = sorted(seg_dir.glob("*.vsl"))
    assert len(segs) == 2
    with open(segs[0], "ab") as f:
        f.write(b"VSLF\x10\x00")  # a torn frame header
    report = shop_store.log.compact()
    assert report.torn_bytes_dropped == 6 and report.segments_removed == 1
    assert sorted(seg_dir.glob("*.vsl")) == segs[:1]
    assert not (seg_dir / ".0000-stale.vsl.tmp").exists()
    assert shop_store.log.verify() == []
    assert all(p.stat().st_blocks * 512 <= p.stat().st_size + 8192 for p in seg_dir.glob("*.vsl"))


def test_rotation_by_size_and_age(shop_store):
    log = vecstore.FeatureLog(shop_store, segment_bytes=20_000, checkpoint_seconds=0.0)
    fill(log, 1)
    n = len(list((shop_store.path / "logs" / "segments").glob("*.vsl")))
    assert n >= 3
    log.segment_seconds = 0.0
    log.ranking("x", ["item-1"], [1.0], table="items", ts=T0)
    log.ranking("y", ["item-1"], [1.0], table="items", ts=T0)
    assert len(list((shop_store.path / "logs" / "segments").glob("*.vsl"))) >= n + 1
    log.flush()
    assert log.info().ranking_calls == 12 and log.verify() == []
    # Closed segments hold no preallocated space past their end.
    for p in (shop_store.path / "logs" / "segments").glob("*.vsl"):
        if p.name != log._seg.path.name if log._seg else True:
            assert p.stat().st_blocks * 512 <= p.stat().st_size + 8192


def test_store_close_and_flush_reach_the_log(tmp_path):
    path = tmp_path / "s.vs"
    store = vecstore.open(path)
    store.create_table("t", {"x": vecstore.Scalar("f32")}).put(["a"], {"x": [1.0]})
    store.log.ranking("r", ["a"], [1.0], table="t", ts=T0)
    store.flush()
    seg = next((path / "logs" / "segments").glob("*.vsl"))
    assert seg.stat().st_blocks * 512 > seg.stat().st_size  # preallocated while live
    store.close()
    assert seg.stat().st_blocks * 512 <= seg.stat().st_size + 8192
    with vecstore.open(path) as again:
        assert again.log.info().ranking_calls == 1
        assert again.log.info().live_segments == 0
    assert not os.path.exists(path / "logs" / "segments" / ".tmp")
