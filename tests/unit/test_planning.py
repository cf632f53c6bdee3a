"""planning.py: what to send for a batch, given what PANDA last acknowledged."""

from bridge.config.settings import MappingSettings
from bridge.core.filtering import DocFilter, compile_selector
from bridge.core.mapping import RowMapper
from bridge.core.planning import plan_batch, row_hash
from bridge.model import Change, Delete, Sent, Seq, Upsert

MAPPER = RowMapper(MappingSettings(columns=["name"]))
BY_CODE = RowMapper(MappingSettings(columns=["name"], external_id="code"))
ALL = DocFilter().accepts


def live(doc_id, seq, **fields):
    return Change(Seq(seq), doc_id, False, {"_id": doc_id, **fields})


def tomb(doc_id, seq):
    return Change(Seq(seq), doc_id, True, {"_id": doc_id, "_deleted": True})


def sent(external_id, name):
    return Sent(external_id, row_hash((name,)))


def test_new_documents_are_upserted_and_recorded():
    plan = plan_batch([live("a", 1, name="A"), live("user:1", 2, name="U")], MAPPER, ALL, {})
    assert plan.upserts == (Upsert("a", ("A",), "a", Seq(1)), Upsert("_user_3a_1", ("U",), "user:1", Seq(2)))
    assert plan.deletes == ()
    assert plan.on_success == {"a": sent("a", "A"), "user:1": sent("_user_3a_1", "U")}


def test_unchanged_rows_are_not_sent_again():
    plan = plan_batch([live("a", 1, name="A"), live("b", 2, name="B2")], MAPPER, ALL,
                      {"a": sent("a", "A"), "b": sent("b", "B")})
    assert [u.external_id for u in plan.upserts] == ["b"]
    assert plan.unchanged == 1


def test_tombstones_delete_what_was_sent_and_skip_what_never_was():
    plan = plan_batch([tomb("a", 3), tomb("never", 4)], MAPPER, ALL, {"a": sent("a", "A")})
    assert plan.deletes == (Delete("a", "a", Seq(3)),)
    assert plan.on_success == {"a": None}
    # an incomplete record (the dataset held rows before the bridge began) deletes unknown ids too
    plan = plan_batch([tomb("never", 4)], MAPPER, ALL, {}, delete_unknown=True)
    assert plan.deletes == (Delete("never", "never", Seq(4)),)


def test_design_documents_are_not_data():
    plan = plan_batch([live("_design/app", 1, views={})], MAPPER, ALL, {})
    assert plan.upserts == () and plan.deletes == () and plan.refusals == ()


def test_changed_external_id_deletes_the_old_row():
    plan = plan_batch([live("d1", 5, code="new", name="N")], BY_CODE, ALL, {"d1": sent("old", "N")}, {})
    assert plan.deletes == (Delete("old", "d1", Seq(5)),)
    assert plan.upserts == (Upsert("new", ("N",), "d1", Seq(5)),)
    assert plan.on_reject == {"d1": None}  # if the upsert is refused, the old row is gone all the same


def test_tombstone_with_field_based_external_id_uses_the_record():
    plan = plan_batch([tomb("d1", 6)], BY_CODE, ALL, {"d1": sent("code-7", "N")}, {})
    assert plan.deletes == (Delete("code-7", "d1", Seq(6)),)


def test_external_id_owned_by_another_document_is_refused():
    plan = plan_batch([live("d2", 7, code="x", name="B")], BY_CODE, ALL, {}, {"x": "d1"})
    assert plan.upserts == ()
    assert len(plan.refusals) == 1 and "already belongs to document 'd1'" in plan.refusals[0].reason


def test_external_id_handed_over_within_a_batch():
    changes = [live("d1", 1, code="y", name="A"), live("d2", 2, code="x", name="B")]
    plan = plan_batch(changes, BY_CODE, ALL, {"d1": sent("x", "A")}, {"x": "d1"})
    assert {u.external_id for u in plan.upserts} == {"x", "y"}
    assert plan.deletes == ()  # d1's old row x is overwritten by d2's upsert, not deleted after it
    assert plan.on_success == {"d1": Sent("y", row_hash(("A",))), "d2": Sent("x", row_hash(("B",)))}


def test_unmappable_documents_are_refused_with_the_reason():
    plan = plan_batch([live("d3", 8, name="C")], BY_CODE, ALL, {}, {})
    assert plan.upserts == ()
    assert plan.refusals[0].doc_id == "d3" and "code" in plan.refusals[0].reason


def test_documents_leaving_and_entering_a_selector():
    accepts = DocFilter(selector=compile_selector({"kind": "person"})).accepts
    changes = [live("in", 1, kind="person", name="I"), live("out", 2, kind="robot", name="O"),
               live("never", 3, kind="robot", name="N")]
    plan = plan_batch(changes, MAPPER, accepts, {"out": sent("out", "O")})
    assert [u.external_id for u in plan.upserts] == ["in"]
    assert plan.deletes == (Delete("out", "out", Seq(2)),)
    assert plan.on_success == {"in": sent("in", "I"), "out": None}


def test_two_documents_swap_external_ids_in_one_batch():
    changes = [live("a", 1, code="y", name="A"), live("b", 2, code="x", name="B")]
    plan = plan_batch(changes, BY_CODE, ALL, {"a": sent("x", "A"), "b": sent("y", "B")}, {"x": "a", "y": "b"})
    assert plan.refusals == ()
    assert {(u.external_id, u.doc_id) for u in plan.upserts} == {("y", "a"), ("x", "b")}
    assert plan.deletes == ()  # both old rows are overwritten, none deleted after its new owner wrote it


def test_a_refused_move_keeps_its_old_external_id_owned():
    # a moves x -> z, but z belongs to c (not in the batch): a keeps x, so b may not take x
    changes = [live("a", 1, code="z", name="A"), live("b", 2, code="x", name="B")]
    plan = plan_batch(changes, BY_CODE, ALL, {"a": sent("x", "A"), "b": sent("y", "B")},
                      {"x": "a", "y": "b", "z": "c"})
    assert sorted(r.doc_id for r in plan.refusals) == ["a", "b"]
    assert plan.upserts == () and plan.deletes == ()
