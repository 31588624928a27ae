import pytest

from greenlane.streams.core.entities import PatternStage
from greenlane.streams.core.pipeline import Assessor
from greenlane.streams.runtime.serde import WireDecoder
from greenlane.streams.stages import quality
from greenlane.streams.stages.patterns import load_pattern_settings
from greenlane.streams.stages.targeting import load_targeting_rules
from tests.streams.core.wire import SCHEMAS, fetch, internal_decoder


@pytest.fixture(scope="module")
def assessor():
    decoders = {s: WireDecoder(SCHEMAS[s], fetch) for s in SCHEMAS}
    return Assessor(
        quality.load_quality_rules(),
        load_targeting_rules(),
        decoders,
        partitions=4,
        finding_decoder=internal_decoder("pattern_finding"),
    )


@pytest.fixture(scope="module")
def sellers():
    return PatternStage(load_pattern_settings(), internal_decoder("pattern_observation"))
