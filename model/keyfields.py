"""Key fields of a letter: places, people and their roles, amounts of money, dates.

Places and people come from jieba (a private tokenizer with a user dictionary of
administrative suffixes, institutions and roles, so that '马坊镇' and '小学校长' split
where they should) and rules that join a name to its suffix. Amounts are normalised to
yuan ('十几万' → 110,000 to 190,000; '1.2亿' → 120,000,000; '八千五' → 8,500).

Example::

    fields = extract_key_fields("檀溪县马坊镇石桥村的村支书李建国私分了八千五元")
    fields.places    # ['檀溪县', '马坊镇', '石桥村']
    fields.people    # [Person(name='李建国', role='村支书')]
    fields.amounts[0].yuan   # 8500.0
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import jieba
import jieba.posseg

logger = logging.getLogger(__name__)
jieba.setLogLevel(logging.WARNING)

ADMIN_SUFFIXES = ("省", "市", "县", "区", "乡", "镇", "村", "社区", "街道", "屯", "寨")
INSTITUTION_SUFFIXES = (
    "中心小学", "小学", "中学", "初中", "高中", "学校", "幼儿园", "职业学校", "医院", "卫生院",
    "卫生室", "诊所", "殡仪馆", "公墓", "陵园", "敬老院", "养老院", "福利院", "养老中心",
    "公司", "合作社", "工厂", "砖厂", "超市", "药店", "食堂", "派出所", "卫健委", "民政局",
    "教育局", "医保局", "人社局", "自然资源局", "农业农村局", "市场监管局", "行政审批局",
)
ROLES = (
    "村支书", "村书记", "党支部书记", "支部书记", "书记", "村主任", "村委会主任", "主任", "副主任",
    "村长", "组长", "村民组长", "会计", "村会计", "出纳", "报账员", "文书", "校长", "副校长",
    "园长", "院长", "副院长", "局长", "副局长", "镇长", "副镇长", "乡长", "副乡长", "县长",
    "站长", "所长", "科长", "股长", "队长", "社长", "经理", "老板", "厂长", "网格员",
    "驻村干部", "包村干部", "第一书记", "主席", "理事长", "医生", "护士长", "老师", "班主任",
    "包工头", "承包人", "食堂承包人", "民政专干", "专干", "干部", "护工",
)
# words that end in a suffix but name no particular place
GENERIC_PREFIXES = {
    "我们", "我", "本", "该", "这", "这个", "那", "那个", "全", "各", "每", "一个", "邻", "隔壁",
    "他们", "咱", "咱们", "你们", "外", "城", "乡", "农", "县里", "镇里", "村里", "哪", "某",
    "整个", "附近", "周边", "老家", "别", "其他", "我所在", "所在", "同", "他", "她", "其",
}
SURNAMES = set(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕"
    "丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严"
    "覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚"
    "符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆"
    "农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋"
    "商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝"
)
NAME_FLAGS = {"ns", "nz", "nr", "nrt", "nt", "n", "eng", "j", "nrfg", "m", "x"}
CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "俩": 2, "三": 3, "四": 4, "五": 5,
             "六": 6, "七": 7, "八": 8, "九": 9}
CN_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
BIG_UNITS = {"万": 10_000, "亿": 100_000_000}
GROUP_NUMBER = re.compile(r"^[一二三四五六七八九十0-9０-９]{1,3}(?:组|队)$")
_NUMBER = r"(?:\d+(?:\.\d+)?|[零〇一二两俩三四五六七八九十拾百佰千仟]+)"
_AMOUNT = re.compile(
    rf"(?P<number>{_NUMBER}(?:[万亿]{_NUMBER}?)*)(?P<approx>多|几|余|来)?(?P<big>[万亿]?)(?P<approx2>多|余)?"
    r"\s*(?P<unit>元|块钱|块|圆)?"
)
_MONEY_CONTEXT = re.compile(r"钱|款|金|费|资金|补贴|补助|补偿|租金|工资|贿|红包|好处|收入|账")
_NOT_MONEY_AFTER = re.compile(
    r"^(?:人|户|亩|平|斤|吨|头|只|个|次|名|公里|米|年|月|天|日|号|岁|间|栋|套|辆|台|张|份|封|条|家|所|元/)"
)
_DATE = re.compile(
    r"(?P<y>(?:19|20)\d{2})\s*(?:年|-|/|\.)\s*(?:(?P<m>1[0-2]|0?[1-9])(?!\d)\s*(?:月|-|/|\.)?"
    r"(?:\s*(?P<d>3[01]|[12]\d|0?[1-9])\s*(?:日|号)?)?)?"
    r"|(?P<rel>(?:去年|今年|前年|上个月|本月|上月)(?:[一二三四五六七八九十\d]{1,2}月)?(?:[一二三四五六七八九十\d]{1,3}[日号])?)"
    r"|(?P<md>(?:1[0-2]|0?[1-9]|[一二三四五六七八九十]{1,2})月(?:(?:3[01]|[12]\d|0?[1-9]|[一二三四五六七八九十]{1,3})[日号])?)"
)


@dataclass(frozen=True)
class Person:
    """A person named in a letter (``name`` may be a surname with 某, or None) and a role."""

    name: str | None
    role: str | None


@dataclass(frozen=True)
class Amount:
    """An amount of money: ``yuan`` (lower bound when approximate) and ``upper`` if a range."""

    text: str
    yuan: float
    upper: float | None = None

    @property
    def approximate(self) -> bool:
        return self.upper is not None


@dataclass
class KeyFields:
    """What a letter names: places, people, amounts, dates."""

    places: list[str] = field(default_factory=list)
    people: list[Person] = field(default_factory=list)
    amounts: list[Amount] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for amount in out["amounts"]:
            amount["approximate"] = amount["upper"] is not None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeyFields:
        return cls(
            places=list(data.get("places", [])),
            people=[Person(p.get("name"), p.get("role")) for p in data.get("people", [])],
            amounts=[Amount(a["text"], a["yuan"], a.get("upper")) for a in data.get("amounts", [])],
            dates=list(data.get("dates", [])),
        )


@lru_cache(maxsize=1)
def _tokenizer() -> jieba.posseg.POSTokenizer:
    """A private jieba tokenizer with our user dictionary (the global one stays untouched)."""
    base = jieba.Tokenizer()
    for word in (*ADMIN_SUFFIXES, *INSTITUTION_SUFFIXES):
        base.add_word(word, freq=200_000, tag="suffix")
    for word in ROLES:
        base.add_word(word, freq=200_000, tag="role")
    return jieba.posseg.POSTokenizer(base)


@lru_cache(maxsize=2048)
def tagged_words(text: str) -> tuple[tuple[str, str], ...]:
    """(word, part-of-speech) pairs of a text. jieba's tagging is the slow part of key fields
    and linking (~5 ms for a 140-character letter); both read a letter, one after the
    other, so the last texts' tags are kept."""
    return tuple((pair.word, pair.flag) for pair in _tokenizer().cut(text))


def _is_name_part(word: str, flag: str) -> bool:
    if word in GENERIC_PREFIXES or flag in {"suffix", "role"}:
        return False
    if flag == "eng":
        return True
    return flag in NAME_FLAGS and bool(re.fullmatch(r"[\u4e00-\u9fffA-Za-z0-9]+", word))


def _places(tokens: list[tuple[str, str]]) -> list[str]:
    found: list[str] = []
    for i, (word, flag) in enumerate(tokens):
        if GROUP_NUMBER.match(word) and found:
            found.append(word)
            continue
        following = tokens[i + 1] if i + 1 < len(tokens) else ("", "")
        if following[1] == "role" and following[0][0] in ADMIN_SUFFIXES and _is_name_part(word, flag) \
                and len(word) >= 2 and word not in GENERIC_PREFIXES:
            found.append(word + following[0][0])  # 石桥 + 村书记: the village is 石桥村
            continue
        suffix = next((s for s in (*INSTITUTION_SUFFIXES, *ADMIN_SUFFIXES) if word.endswith(s)), None)
        if suffix is None:
            continue
        if word != suffix and len(word) >= len(suffix) + 2 and word[: -len(suffix)] not in GENERIC_PREFIXES:
            found.append(word)  # jieba kept name and suffix together: 石门乡
            continue
        if word != suffix:
            continue
        parts: list[str] = []
        j = i - 1
        limit = 2 if suffix in INSTITUTION_SUFFIXES else 1
        while j >= 0 and len(parts) < limit and _is_name_part(*tokens[j]):
            parts.insert(0, tokens[j][0])
            j -= 1
        name = "".join(parts)
        if name and (len(name) >= 2 or tokens[i - 1][1] == "eng") and name not in GENERIC_PREFIXES:
            found.append(name + word)
    return list(dict.fromkeys(found))


COMMON_WORD_FREQ = 50  # jieba counts: 查清 144, 孙子 871; real names are rare or absent
FUNCTION_CHARS = set("一了的不是在有这那和与就都也又把被给让从向对着过吗呢吧啊")


def _known_non_name(word: str) -> bool:
    """A common word that merely starts with a surname character (查清, 孙子, 许可, 查一查);
    jieba's dictionary tags some of them as names."""
    frequency = _tokenizer().tokenizer.FREQ.get(word) or 0
    return frequency >= COMMON_WORD_FREQ or any(c in FUNCTION_CHARS for c in word[1:])


def _person_name(word: str, flag: str, following: str | None) -> str | None:
    if word.endswith((*ADMIN_SUFFIXES, *INSTITUTION_SUFFIXES)) or (len(word) > 1 and _known_non_name(word)):
        return None  # jieba tags some village names (王庄村) and words as person names
    if flag.startswith("nr") and 2 <= len(word) <= 4 and word[0] in SURNAMES:
        return word
    if len(word) == 1 and word in SURNAMES and following in {"某", "某某", "某人"}:
        return word + following
    if re.fullmatch(r"[\u4e00-\u9fff]某{1,2}", word) and word[0] in SURNAMES:
        return word
    return None


def _people(tokens: list[tuple[str, str]]) -> list[Person]:
    people: list[Person] = []
    used: set[int] = set()
    for i, (word, flag) in enumerate(tokens):
        following = tokens[i + 1][0] if i + 1 < len(tokens) else None
        name = _person_name(word, flag, following)
        if name is None or i in used:
            continue
        used.add(i)
        if name != word:
            used.add(i + 1)
        after = i + (2 if name != word else 1)
        role = None
        if i > 0 and tokens[i - 1][1] == "role":
            role = tokens[i - 1][0]
        elif after < len(tokens) and tokens[after][1] == "role":
            role = tokens[after][0]
            used.add(after)
        people.append(Person(name, role))
    for i, (word, flag) in enumerate(tokens):
        before, before_flag = tokens[i - 1] if i > 0 else ("", "")
        if flag == "role" and i not in used and len(before) == 1 and before in SURNAMES \
                and before_flag.startswith("nr"):
            people.append(Person(before + word, word))  # 王书记
    named_roles = {p.role for p in people if p.role}
    for word, flag in tokens:
        if flag == "role" and word not in named_roles:
            people.append(Person(None, word))
            named_roles.add(word)
    return list(dict.fromkeys(people))


MAX_NUMBER_CHARS = 30  # longer digit runs are account or ID numbers, not amounts


def chinese_number(text: str) -> float:
    """The value of a number written in digits or Chinese numerals ('八千五' → 8500).

    Raises:
        ValueError: the text is not a number, or is longer than ``MAX_NUMBER_CHARS``.
    """
    text = text.strip()
    if len(text) > MAX_NUMBER_CHARS:  # also bounds the recursion below and keeps the value finite
        raise ValueError(f"expected a number of at most {MAX_NUMBER_CHARS} characters, "
                         f"found {len(text)} characters")
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    for big, factor in (("亿", BIG_UNITS["亿"]), ("万", BIG_UNITS["万"])):
        if big in text:
            high, _, low = text.partition(big)
            low_value = chinese_number(low) if low else 0.0
            if low and len(low) == 1 and low in CN_DIGITS:
                low_value *= factor / 10  # 三万二 = 32,000
            return chinese_number(high) * factor + low_value
    if not text or any(c not in CN_DIGITS and c not in CN_UNITS for c in text):
        raise ValueError(f"expected a number, found {text!r}")
    total, digit, last_unit = 0, None, None
    for char in text:
        if char in CN_DIGITS:
            digit = CN_DIGITS[char]
        else:
            unit = CN_UNITS[char]
            total += (1 if digit is None else digit) * unit
            digit, last_unit = None, unit
    if digit is not None:
        # a trailing digit after a unit is one unit lower: 八千五 = 8,500, 三百二 = 320
        total += digit * (last_unit // 10 if last_unit and last_unit >= 100 and len(text) > 2
                          and text[-2] in CN_UNITS else 1)
    return float(total)


def _amounts(text: str) -> list[Amount]:
    found: list[Amount] = []
    for match in _AMOUNT.finditer(text):
        number, big, unit = match["number"], match["big"], match["unit"]
        approx = match["approx"] or match["approx2"]
        after = text[match.end():match.end() + 3]
        context = text[max(0, match.start() - 8):match.end() + 4]
        if not unit and not (big or "万" in number or "亿" in number):
            continue  # a bare number is not money
        if not unit and (_NOT_MONEY_AFTER.match(after) or not _MONEY_CONTEXT.search(context)):
            continue
        digits = number
        if approx == "几" and digits in {"十", "拾"}:
            low, high = 11.0, 19.0
        else:
            try:
                value = chinese_number(digits)
            except ValueError:
                continue
            if approx == "几":
                low, high = value + 1, value + 9 if value < 100 else value * 1.9
            else:
                low = high = value
        factor = BIG_UNITS.get(big, 1)
        low, high = low * factor, high * factor
        upper = high if approx in {"几"} else (low * 1.5 if approx else None)
        if low <= 0:
            continue
        found.append(Amount(match.group(0).strip(), low, upper if upper != low else None))
    return found


def _dates(text: str) -> list[str]:
    dates = []
    for match in _DATE.finditer(text):
        if match["y"]:
            parts = [match["y"]] + [f"{int(match[k]):02d}" for k in ("m", "d") if match[k]]
            dates.append("-".join(parts))
        else:
            dates.append(match.group(0))
    return list(dict.fromkeys(dates))


CONTENT_FLAGS = ("n", "v", "a", "j", "l", "i")  # nouns, verbs, adjectives, abbreviations, idioms


def content_words(text: str) -> frozenset[str]:
    """Distinct content words of a letter (two characters or more), for word overlap."""
    return frozenset(word for word, flag in tagged_words(text)
                     if len(word) >= 2 and flag.startswith(CONTENT_FLAGS))


def extract_key_fields(text: str) -> KeyFields:
    """Places, people (with roles), amounts in yuan and dates named in a letter."""
    tokens = list(tagged_words(text))
    places = _places(tokens)
    return KeyFields(places=places, people=_people_not_places(_people(tokens), places),
                     amounts=_amounts(text), dates=_dates(text))


def _people_not_places(people: list[Person], places: list[str]) -> list[Person]:
    """People whose 'name' begins a place of the same letter are the place (jieba tags
    '乔岭' in 乔岭县 and '李家湾' in 李家湾村 as names): their role, if any, stays."""
    kept: list[Person] = []
    for person in people:
        if person.name and any(place.startswith(person.name) for place in places):
            person = Person(None, person.role)
        if (person.name or person.role) and person not in kept:
            kept.append(person)
    return kept
