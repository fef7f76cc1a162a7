"""`dimee drift --calibrated` streams data files too (issue 29 item 4), each whole, named as given."""

from __future__ import annotations

import pytest

from dimee.common.errors import DataError
from dimee.offline.experiments import stream_segments


def test_data_files_are_streamed_whole_in_the_order_given(tmp_path):
    reviews = tmp_path / "reviews.csv"
    reviews.write_text("text,label\ngreat film,positive\ndull plot,negative\nloved it,positive\n")
    news = tmp_path / "news.jsonl"
    news.write_text('{"text": "rates rise", "label": "negative"}\n{"text": "team wins", "label": "positive"}\n')
    segments = stream_segments(tmp_path, [str(news), str(reviews)])
    assert [name for name, _ in segments] == [str(news), str(reviews)]
    (_, first), (_, second) = segments
    assert first.texts == ["rates rise", "team wins"] and second.texts == ["great film", "dull plot", "loved it"]
    assert [second.label_names[y] for y in second.labels] == ["positive", "negative", "positive"]


def test_an_unknown_name_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'mars'"):
        stream_segments(tmp_path, ["mars"])
