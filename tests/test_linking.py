from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from model.keyfields import content_words, extract_key_fields
from model.labels import LabelSchema
from model.linking import FEATURES, Entry, MatterIndex, PairScorer, WordFrequencies, pair_features
from serving.cases import (
    VECTOR_DTYPE,
    Matters,
    entry_from_letter,
    rebuild_index,
    reencode_vectors,
    vector_bytes,
)
from serving.engine import Engine
from serving.store import Letter, Store
from training.cli import app

FIRST = "石桥村村支书李建国把集体鱼塘低价承包给他小舅子，一年租金才两千元，村民都有意见"
REPHRASED = "来电人反映：石桥村书记李建国将村里的鱼塘以每年两千元的价格租给自家亲戚，请查处"
HARD_NEGATIVE = "石桥村村支书李建国家的狗天天半夜乱叫，吵得邻居睡不着"
UNRELATED = "青山殡仪馆强制家属购买八千元的骨灰盒"
# weights chosen by hand for these tests: shared village, names, amounts and sector matter
SCORER = PairScorer(weights=[0.0, 0.0, 2.0, 0.0, 2.0, 0.5, 2.0, 1.5, 3.0, -7.0], threshold=0.5)


def _entry(letter_id: str, text: str, sector: str, days: int = 0) -> Entry:
    return Entry(letter_id=letter_id, text=text, key_fields=extract_key_fields(text), sector=sector,
                 received_at=datetime(2026, 3, 1, tzinfo=UTC) + timedelta(days=days))


def test_rephrased_letter_from_another_complainant_is_linked() -> None:
    index = MatterIndex(scorer=SCORER)
    index.add(_entry("a", FIRST, "rural_collective_assets"), "matter-1")
    decision = index.link(_entry("b", REPHRASED, "rural_collective_assets", days=20))
    assert decision.matter_id == "matter-1"
    assert [link.letter_id for link in decision.repeat_of] == ["a"]
    assert decision.repeat_of[0].shared == {"places": ["石桥村"], "people": ["李建国"],
                                            "amounts": [2000.0]}


def test_hard_negative_with_the_same_official_is_not_linked() -> None:
    index = MatterIndex(scorer=SCORER)
    index.add(_entry("a", FIRST, "rural_collective_assets"), "matter-1")
    index.add(_entry("u", UNRELATED, "funeral_services"), "matter-2")
    decision = index.link(_entry("c", HARD_NEGATIVE, "other", days=3))
    assert decision.repeat_of == []
    assert decision.matter_id not in {"matter-1", "matter-2"}


def test_a_scorer_without_vectors_ignores_them(tmp_path) -> None:  # noqa: ANN001
    scorer = PairScorer(weights=SCORER.weights, use_vectors=False)
    index = MatterIndex(scorer=scorer, top_k=1)
    a = Entry("a", "甲乙丙丁", extract_key_fields("甲乙丙丁"), vector=np.array([1.0, 0.0]))
    index.add(a, "m-a")
    query = Entry("q", "壬癸子丑", extract_key_fields("壬癸子丑"), vector=np.array([1.0, 0.0]))
    assert index.candidates(query) == set()
    assert pair_features(query, a, use_vectors=False)[0] == 0.0
    scorer.save(tmp_path / "linking.json")
    assert PairScorer.load(tmp_path / "linking.json").use_vectors is False


def test_the_cosine_margin_discounts_a_letter_close_to_many() -> None:
    index = MatterIndex(scorer=SCORER, top_k=2)
    crowd = [Entry(f"c{i}", f"甲{i}", extract_key_fields(""), vector=np.array([1.0, 0.02 * i, 0.0]))
             for i in range(12)]
    for entry in [*crowd, Entry("lone", "乙", extract_key_fields(""), vector=np.array([0.0, 0.0, 1.0]))]:
        index.add(entry, entry.letter_id)
    common = Entry("q1", "丙", extract_key_fields(""), vector=np.array([1.0, 0.0, 0.0]))
    specific = Entry("q2", "丁", extract_key_fields(""), vector=np.array([0.1, 0.0, 1.0]))

    def cosine_and_margin(entry: Entry, other: str) -> tuple[float, float]:
        ids, features = index.features(entry)
        row = dict(zip(FEATURES, features[ids.index(other)], strict=True))
        return row["cosine"], row["cosine_margin"]

    common_cosine, common_margin = cosine_and_margin(common, "c0")
    specific_cosine, specific_margin = cosine_and_margin(specific, "lone")
    assert common_cosine > specific_cosine  # the crowd's letter is closer...
    assert specific_margin > 0.7 > 0.05 > common_margin  # ...but so are ten others
    top_ten = np.sort([float(e.vector @ specific.vector) for e in index.entries.values()])[-10:]
    assert specific_margin == pytest.approx(specific_cosine - top_ten.mean())


def test_letters_outside_the_time_window_are_not_candidates() -> None:
    index = MatterIndex(scorer=SCORER, window_days=30)
    index.add(_entry("a", FIRST, "rural_collective_assets"), "matter-1")
    assert index.candidates(_entry("b", REPHRASED, "rural_collective_assets", days=400)) == set()


def test_vectors_propose_candidates_without_shared_words() -> None:
    index = MatterIndex(scorer=SCORER, top_k=1)
    a = Entry("a", "甲乙丙丁", extract_key_fields("甲乙丙丁"), vector=np.array([1.0, 0.0]))
    b = Entry("b", "戊己庚辛", extract_key_fields("戊己庚辛"), vector=np.array([0.0, 1.0]))
    index.add(a, "m-a")
    index.add(b, "m-b")
    query = Entry("q", "壬癸子丑", extract_key_fields("壬癸子丑"), vector=np.array([0.9, 0.1]))
    assert index.candidates(query) == {"a"}
    assert pair_features(query, a)[0] == pytest.approx(0.9 / np.hypot(0.9, 0.1))


def test_the_cosine_search_split_over_threads_finds_the_same_candidates(monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr("model.linking.SPLIT_ROWS", 8)
    rng = np.random.default_rng(3)
    entries = [Entry(f"s{i}", f"甲{i}", extract_key_fields(""), vector=rng.normal(size=16))
               for i in range(50)]
    one, split = MatterIndex(scorer=SCORER, top_k=5), MatterIndex(scorer=SCORER, top_k=5, search_threads=3)
    for entry in entries:
        one.add(entry, entry.letter_id)
        split.add(entry, entry.letter_id)
    for i in range(5):
        query = Entry(f"q{i}", "乙", extract_key_fields(""), vector=rng.normal(size=16))
        assert split._search is not None
        np.testing.assert_allclose(split._similarity(query), one._similarity(query), rtol=1e-6)
        assert split.candidates(query) == one.candidates(query)
        assert len(split.candidates(query)) == 5
    split.use_search_threads(1)
    assert split._search is None and split.candidates(query) == one.candidates(query)
    with pytest.raises(ValueError, match="search_threads"):
        MatterIndex(search_threads=0)


def test_matter_id_is_stable_across_restarts(store_url: str) -> None:
    url = store_url
    first = _entry("L-1", FIRST, "rural_collective_assets")
    with Store(url).session() as session:
        session.add(Letter(external_id="L-1", received_at=first.received_at, text=FIRST,
                           predictions={}, sector=first.sector, confidence=0.9, needs_review=False,
                           model_version="v1", key_fields=first.key_fields.to_dict(),
                           matter_id="matter-1", repeat_of=[], vector=vector_bytes(None)))
    index = rebuild_index(Store(url), SCORER)  # a new process: only the store survives
    assert index.link(_entry("L-2", REPHRASED, "rural_collective_assets", 5)).matter_id == "matter-1"


def test_the_index_is_rebuilt_from_stored_words_without_tagging_again(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [("L-1", FIRST, sorted(content_words(FIRST))), ("L-0", REPHRASED, None)]  # None: an older row
    with Store(store_url).session() as session:
        for external_id, text, words in rows:
            session.add(Letter(external_id=external_id, received_at=datetime(2026, 3, 1, tzinfo=UTC),
                               text=text, predictions={}, confidence=0.9, needs_review=False,
                               model_version="v1", key_fields=extract_key_fields(text).to_dict(),
                               matter_id=external_id, repeat_of=[], link_words=words))
    tagged: list[str] = []
    monkeypatch.setattr("model.linking.content_words",
                        lambda text: tagged.append(text) or content_words(text))
    index = rebuild_index(Store(store_url), SCORER)
    assert tagged == [REPHRASED]  # only the row stored without its words was tagged again
    assert index.entries["L-1"].words == content_words(FIRST)
    assert index.entries["L-0"].words == content_words(REPHRASED)
    with Store(store_url).session() as session:  # ...and its words are kept from now on
        assert session.scalars(select(Letter.link_words).where(Letter.external_id == "L-0")).one() \
            == sorted(content_words(REPHRASED))
    again = rebuild_index(Store(store_url), SCORER)
    assert tagged == [REPHRASED] and again.entries["L-0"].words == content_words(REPHRASED)


def _store_letters(url: str, texts: list[tuple[str | None, str]],
                   spaces: list[str | None] | None = None) -> Store:
    store = Store(url)
    with store.session() as session:
        for i, (title, text) in enumerate(texts):
            session.add(Letter(external_id=f"r-{i}", received_at=datetime(2026, 1, 1, tzinfo=UTC),
                               title=title, text=text, predictions={}, confidence=1.0,
                               needs_review=False, model_version="old", key_fields={}, matter_id=f"m{i}",
                               repeat_of=[], vector=vector_bytes(np.array([1.0, 0.0])),
                               vector_space=spaces[i] if spaces else "old-space"))
    return store


def _stored_vectors(store: Store) -> list[np.ndarray]:
    with store.session() as session:
        return [np.frombuffer(v, dtype=VECTOR_DTYPE) for v in
                session.scalars(select(Letter.vector).order_by(Letter.id))]


def _stored_spaces(store: Store) -> list[str | None]:
    with store.session() as session:
        return list(session.scalars(select(Letter.vector_space).order_by(Letter.id)))


def test_vectors_of_another_encoder_are_left_out_of_the_index(
        store_url: str, caplog: pytest.LogCaptureFixture) -> None:
    store = _store_letters(store_url, [(None, "第一封"), (None, "第二封"), (None, "第三封")],
                           spaces=["space-a", "space-b", None])
    matters = Matters(store, SCORER, "space-a")
    vectors = {i: e.vector is not None for i, e in matters.index.entries.items()}
    assert vectors == {"r-0": True, "r-1": False, "r-2": True}  # None: stored before spaces
    assert matters.foreign_vectors == 1
    assert "1 stored letters have vectors from another encoder than space-a" in caplog.text
    assert "triage reencode" in caplog.text

    with store.session() as session:
        matters.use_model(session, SCORER, "space-a")  # the same space: nothing changes
    assert matters.foreign_vectors == 1 and len(matters.index._matrix()) == 2
    with store.session() as session:
        matters.use_model(session, SCORER, "space-c")  # a reload to another encoder
    assert matters.foreign_vectors == 3 and matters.vector_space == "space-c"
    assert len(matters.index._matrix()) == 0
    assert all(e.vector is None for e in matters.index.entries.values())
    assert matters.index.candidates(_entry("q", "第一封", "other")) == {"r-0"}  # by wording


def test_reencoding_rewrites_every_stored_vector(store_url: str, schema: LabelSchema) -> None:
    store = _store_letters(store_url, [("标题", "第一封来信"), (None, "第二封"), (None, "三"),
                                       (None, "第四封来信内容"), (None, "五")])
    seen: list[str] = []

    def vectors(texts: list[str]) -> np.ndarray:
        seen.extend(texts)
        return np.array([[0.0, float(len(t))] for t in texts])

    assert reencode_vectors(store, vectors, "new-space", schema, batch_size=2) == 5
    assert _stored_spaces(store) == ["new-space"] * 5
    assert seen == ["标题\n第一封来信", "第二封", "三", "第四封来信内容", "五"]  # title and text, as at intake
    assert [v.tolist() for v in _stored_vectors(store)] == [[0.0, float(len(t))] for t in seen]


def test_triage_reencode_uses_the_models_vectors(tiny_model, tmp_path) -> None:  # noqa: ANN001
    url = f"sqlite:///{tmp_path / 'letters.db'}"
    texts = ["村里低保名单全是干部亲戚", "学校食堂饭菜越来越少"]
    store = _store_letters(url, [(None, t) for t in texts])
    result = CliRunner().invoke(app, ["reencode", "--model", str(tiny_model), "--store", url])
    assert result.exit_code == 0, result.output
    assert "2 stored letters re-encoded" in result.output
    engine = Engine.load(tiny_model)
    expected = engine.vectors(texts)
    assert _stored_spaces(store) == [engine.vector_space] * 2
    for found, wanted in zip(_stored_vectors(store), expected, strict=True):
        assert np.allclose(found, wanted, atol=2e-2 * np.abs(wanted).max())

    result = CliRunner().invoke(app, ["reencode", "--model", str(tmp_path / "none"), "--store", url])
    assert result.exit_code == 2 and "none" in result.output


def test_stored_vectors_round_trip(tmp_path) -> None:
    letter = Letter(external_id="v", received_at=datetime(2026, 1, 1, tzinfo=UTC), text="来信内容",
                    predictions={}, confidence=1.0, needs_review=False, model_version="v",
                    key_fields={}, matter_id="m", repeat_of=[], vector=vector_bytes(np.array([3.0, 4.0])))
    entry = entry_from_letter(letter)
    assert entry.vector == pytest.approx([0.6, 0.8], abs=1e-3)


def test_fitted_scorer_meets_the_precision_target() -> None:
    rng = np.random.default_rng(0)
    same = (rng.random(2000) < 0.2).astype(int)
    features = np.column_stack([rng.normal(same * 1.5, 1.0), *([np.zeros(2000)] * 8), np.ones(2000)])
    scorer = PairScorer.fit(features, same, precision=0.95)
    kept = scorer.probability(features) >= scorer.threshold
    assert same[kept].mean() >= 0.95
    assert 0 < kept.sum() < same.sum()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"weights": [1.0]}, f"expected {len(FEATURES)} weights"),
     ({"threshold": 1.5}, "threshold must be in [0.0, 1.0], found 1.5")],
)
def test_scorer_arguments_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        PairScorer(**kwargs)


def test_index_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match=re.escape("lsh_threshold must be in [0.0, 1.0], found 2")):
        MatterIndex(lsh_threshold=2)


def _index_of(template: str, count: int) -> MatterIndex:
    """An index holding ``count`` letters made from ``template`` (``{i}``: the letter's number)."""
    index = MatterIndex(scorer=SCORER)
    for i in range(count):
        index.add(_entry(f"stored-{i}", template.format(i=i), "other"), f"m{i}")
    return index


def test_rare_shared_words_weigh_more_than_common_ones() -> None:
    index = _index_of("第{i}封：村里的问题反映给领导，请调查处理", 20)
    a = _entry("a", "殡仪馆强制购买骨灰盒，请调查处理", "funeral_services")
    b = _entry("b", "家属被逼买骨灰盒，殡仪馆太黑，请调查处理", "funeral_services")
    c = _entry("c", "低保名单有问题，请调查处理", "social_assistance")
    assert index.frequencies.overlap(a.words, b.words) > 2 * index.frequencies.overlap(a.words, c.words)


def test_word_overlap_is_the_idf_weighted_jaccard() -> None:
    documents = [{"低保", "名额", "村长"}, {"低保", "亲戚"}, {"殡仪馆", "骨灰盒"}, {"低保", "名额"}]
    frequencies = WordFrequencies()
    for words in documents:
        frequencies.add(frozenset(words))
    a, b = frozenset({"低保", "名额", "亲戚", "新词"}), frozenset({"名额", "亲戚", "骨灰盒"})

    def idf(word: str) -> float:
        return math.log(5 / (sum(word in d for d in documents) + 1)) + 1.0

    expected = sum(idf(w) for w in a & b) / sum(idf(w) for w in a | b)
    assert frequencies.overlap(a, b) == pytest.approx(expected, rel=1e-12)
    assert frequencies.overlap(frozenset(), frozenset()) == 0.0


def test_places_and_names_most_letters_share_do_not_count() -> None:
    """On a regional board every message names the city and its addressee: sharing them
    says nothing; sharing a village still does."""
    index = _index_of("胡书记您好，A市{i}号小区门口的路灯坏了第{i}天", 40)
    first = _entry("x", "胡书记您好，A市石桥村的低保名额被村干部亲戚占了", "social_assistance")
    second = _entry("y", "胡书记您好，A市青山殡仪馆强制家属购买骨灰盒", "funeral_services")
    third = _entry("z", "A市石桥村低保评议不公开", "social_assistance")
    features = dict(zip(FEATURES, pair_features(first, second, index.frequencies), strict=True))
    assert "A市" in first.broad_places & second.broad_places and "胡书记" in first.names & second.names
    assert features["shared_broad_places"] == 0 and features["shared_names"] == 0
    assert dict(zip(FEATURES, pair_features(first, third, index.frequencies), strict=True))[
        "shared_local_places"] == 1
