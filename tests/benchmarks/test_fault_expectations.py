"""The fault suite's expectations (`make faults`, scenario b) agree with the message contract: every record it
says must be dead-lettered at the router is refused by the router's parse, so a miss in the suite's report is the
system's, not a stale expectation's. Defect: a ~900 KB text was expected dead-lettered, but texts are cut to
DEFAULT_MAX_TEXT_CHARS (the encoder reads far fewer) and answered, so every run reported 44/45 accounted."""

import pytest

from benchmarks.faults.hostile import malformed_samples
from dimee.streaming.messages import MessageError, Sample, parse

MALFORMED = malformed_samples("suite")


@pytest.mark.parametrize("hostile", MALFORMED, ids=[h.kind for h in MALFORMED])
def test_each_record_expected_dead_lettered_is_refused_by_the_routers_parse(hostile):
    key = None if hostile.key is None else hostile.key.encode()
    with pytest.raises(MessageError):
        parse(Sample, hostile.value, {"num_labels": 2}, key=key)
