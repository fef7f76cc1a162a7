"""The input a stage measured alone drains: the bench's messages several times over, every copy a new id, since
every stage dedupes by id (a repeated id would be dropped, not processed, and the rate would flatter it)."""

from benchmarks.stream_runs import _fresh_ids


def test_every_copy_has_ids_of_its_own_and_the_same_content():
    messages = [{"id": "a", "text": "one"}, {"id": "b", "text": "two"}]
    many = _fresh_ids(messages, 3)
    assert len(many) == 6 and len({m["id"] for m in many}) == 6
    assert [m["text"] for m in many] == ["one", "two"] * 3
    assert messages == [{"id": "a", "text": "one"}, {"id": "b", "text": "two"}]  # the bench's own untouched
