"""Feature logging: what the retrieval and ranking stages served, and the outcomes that followed.

``store.log`` returns a :class:`FeatureLog`.  Modules, each doing one thing:

* ``log``: the :class:`FeatureLog` API and the write path;
* ``inputs``: validation of every argument, before anything is written;
* ``columns``: IDs, scores and features as raw column bytes, and back;
* ``frames``: the checksummed frame format of segment files;
* ``segments``: per-process append-only segment files, liveness, rewriting;
* ``delta``: what a stretch of a segment adds to the index;
* ``sketch``: mergeable moments and the quantile sketch;
* ``index``: the LMDB index derived from the segments (stats, labels, catalog);
* ``view``: a consistent picture of the log for one read;
* ``stats``, ``drift``, ``export``, ``retention``: the read and maintenance APIs.

docs/feature-logging.md is the user guide; docs/format.md describes the bytes.
"""

from .drift import DriftReport, FeatureDrift
from .export import ExportResult
from .log import FeatureLog, LogInfo
from .retention import PruneReport
from .stats import LogStats

__all__ = ["DriftReport", "ExportResult", "FeatureDrift", "FeatureLog", "LogInfo", "LogStats", "PruneReport"]
