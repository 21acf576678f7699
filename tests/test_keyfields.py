from __future__ import annotations

import re

import pytest

from model.keyfields import Amount, KeyFields, Person, chinese_number, extract_key_fields


def test_administrative_chain_and_group() -> None:
    fields = extract_key_fields("我们檀溪县马坊镇石桥村五组的村支书李建国把集体鱼塘承包给他小舅子")
    assert fields.places == ["檀溪县", "马坊镇", "石桥村", "五组"]
    assert Person("李建国", "村支书") in fields.people


def test_generic_places_are_not_places() -> None:
    fields = extract_key_fields("我们村和隔壁村都一样，本镇的干部也不管，这个县太乱了")
    assert fields.places == []


def test_institutions_are_places() -> None:
    fields = extract_key_fields("红星中心小学校长刘明收了供应商好处费，青山殡仪馆也一样")
    assert "红星中心小学" in fields.places
    assert "青山殡仪馆" in fields.places
    assert Person("刘明", "校长") in fields.people


@pytest.mark.parametrize(
    ("text", "person"),
    [
        ("王书记和会计张某私分了钱", Person("王书记", "书记")),
        ("王书记和会计张某私分了钱", Person("张某", "会计")),
        ("县人民医院院长赵某某收红包", Person("赵某某", "院长")),
        ("听说会计也拿了钱", Person(None, "会计")),
    ],
)
def test_people_and_roles(text: str, person: Person) -> None:
    assert person in extract_key_fields(text).people


def test_a_conjunction_is_not_a_surname() -> None:
    people = extract_key_fields("王书记和会计张某私分了钱").people
    assert all(p.name != "和会计" for p in people)


@pytest.mark.parametrize(
    ("text", "yuan", "upper"),
    [
        ("收了好处费十几万", 110_000, 190_000),
        ("挪用资金1.2亿元", 120_000_000, None),
        ("私分了八千五元", 8_500, None),
        ("补偿款62万被截留", 620_000, None),
        ("每亩补贴8万元", 80_000, None),
        ("一年租金才两千多块", 2_000, 3_000),
        ("红包三百二十元", 320, None),
    ],
)
def test_amounts_in_yuan(text: str, yuan: float, upper: float | None) -> None:
    amounts = extract_key_fields(text).amounts
    assert len(amounts) == 1, amounts
    assert amounts[0].yuan == yuan
    assert amounts[0].upper == upper


@pytest.mark.parametrize("text", ["全村有300户人家", "村里五万多亩地", "等了三年", "第3次反映"])
def test_counts_that_are_not_money(text: str) -> None:
    assert extract_key_fields(text).amounts == []


@pytest.mark.parametrize(
    ("text", "value"),
    [("八千五", 8500), ("三万二", 32000), ("两千", 2000), ("1.2亿", 1.2e8), ("一百二十万", 1.2e6),
     ("三百二", 320), ("十五", 15), ("二十万零五百", 200_500), ("十", 10), ("5", 5)],
)
def test_chinese_numbers(text: str, value: float) -> None:
    assert chinese_number(text) == value


def test_not_a_number() -> None:
    with pytest.raises(ValueError, match=re.escape("expected a number, found '村里'")):
        chinese_number("村里")


def test_dates() -> None:
    fields = extract_key_fields("2023年5月12日交的钱，2024-03说退，去年3月又说，6月8日再去")
    assert fields.dates == ["2023-05-12", "2024-03", "去年3月", "6月8日"]


def test_round_trip_through_dict() -> None:
    fields = KeyFields(places=["柳湾村"], people=[Person("张某", "会计")],
                       amounts=[Amount("十几万", 110_000, 190_000)], dates=["2023-05"])
    data = fields.to_dict()
    assert data["amounts"][0]["approximate"] is True
    assert KeyFields.from_dict(data) == fields


def test_a_village_is_not_a_person() -> None:
    fields = extract_key_fields("王庄村的书记王德贵把鱼塘包给了亲戚")
    assert "王庄村" in fields.places
    assert all(p.name != "王庄村" for p in fields.people)


@pytest.mark.parametrize("text", ["请上级领导查清此事", "我孙子在这个学校上学", "没有许可证就开工了"])
def test_words_starting_with_a_surname_are_not_people(text: str) -> None:
    assert [p.name for p in extract_key_fields(text).people if p.name] == []


def test_the_name_part_of_a_place_is_not_a_person() -> None:
    fields = extract_key_fields("我在乔岭县仁和医院内科当过护士，松岚县李家湾村的人都知道")
    assert "乔岭县" in fields.places and "李家湾村" in fields.places
    assert not {p.name for p in fields.people} & {"乔岭", "李家湾"}
