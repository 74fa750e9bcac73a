"""MixInstruct-format data: records, streaming file I/O, conversions and preference signals.

Example:
    >>> from blender_serve.data import iter_records, candidate_scores
    >>> for record in iter_records("mix_test.jsonl.gz"):
    ...     print(record.id, candidate_scores(record, "cmp_results"))
"""

from blender_serve.data.convert import (
    FORMATS,
    convert_file,
    from_plain,
    from_preference_pairs,
    to_plain,
    to_preference_pairs,
)
from blender_serve.data.io import (
    DataFormatError,
    ReadStats,
    RecordWriter,
    existing_ids,
    iter_objects,
    iter_records,
    read_records,
    write_objects,
    write_records,
)
from blender_serve.data.preferences import (
    CMP_SIGNAL,
    candidate_scores,
    cmp_matrix,
    cmp_scores,
    parse_signal,
    signal_help,
)
from blender_serve.data.records import VERDICTS, MixCandidate, MixRecord

__all__ = [
    "MixCandidate", "MixRecord", "VERDICTS",
    "DataFormatError", "ReadStats", "RecordWriter", "existing_ids", "iter_objects", "iter_records",
    "read_records", "write_objects", "write_records",
    "FORMATS", "convert_file", "from_plain", "from_preference_pairs", "to_plain", "to_preference_pairs",
    "CMP_SIGNAL", "candidate_scores", "cmp_matrix", "cmp_scores", "parse_signal", "signal_help",
]
