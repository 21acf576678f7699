from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from model.keyfields import extract_key_fields
from model.linking import FEATURES, Entry, MatterIndex, PairScorer, pair_features
from serving.cases import entry_from_letter, rebuild_index, vector_bytes
from serving.store import Letter, Store

FIRST = "石桥村村支书李建国把集体鱼塘低价承包给他小舅子，一年租金才两千元，村民都有意见"
REPHRASED = "来电人反映：石桥村书记李建国将村里的鱼塘以每年两千元的价格租给自家亲戚，请查处"
HARD_NEGATIVE = "石桥村村支书李建国家的狗天天半夜乱叫，吵得邻居睡不着"
UNRELATED = "青山殡仪馆强制家属购买八千元的骨灰盒"
# weights chosen by hand for these tests: shared village, names, amounts and sector matter
SCORER = PairScorer(weights=[0.0, 2.0, 0.0, 2.0, 0.5, 2.0, 1.5, 3.0, -7.0], threshold=0.5)


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


def test_stored_vectors_round_trip(tmp_path) -> None:
    letter = Letter(external_id="v", received_at=datetime(2026, 1, 1, tzinfo=UTC), text="来信内容",
                    predictions={}, confidence=1.0, needs_review=False, model_version="v",
                    key_fields={}, matter_id="m", repeat_of=[], vector=vector_bytes(np.array([3.0, 4.0])))
    entry = entry_from_letter(letter)
    assert entry.vector == pytest.approx([0.6, 0.8], abs=1e-3)


def test_fitted_scorer_meets_the_precision_target() -> None:
    rng = np.random.default_rng(0)
    same = (rng.random(2000) < 0.2).astype(int)
    features = np.column_stack([rng.normal(same * 1.5, 1.0), *([np.zeros(2000)] * 7), np.ones(2000)])
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
