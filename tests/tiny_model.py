"""A tiny random BERT base model (vocab of a few hundred Chinese characters, 2 layers,
hidden 32) written to a folder, so that training runs in seconds and needs no network."""

from __future__ import annotations

from pathlib import Path

from transformers import BertConfig, BertModel, BertTokenizerFast

# Characters of the test letters plus common ones; anything else becomes [UNK].
CHARS = (
    "的一是了我不人在他有这个上们来到时大地为子中你说生国年着就那和要她出也得里后自以会家可下而过天去能对小多然"
    "于心学么之都好看起发当没成只如事把还用第样道想作种开美总从无情己面最女但现前些所同日手又行意动方期它头经长儿回位分"
    "爱老因很给名法间斯知世什两次使身者被高已亲其进此话常与活正感见明问力理尔点文几定本公特做外孩相西果走将月十实向声车"
    "全信重三机工物气每并别真打太新比才便夫再书部水像眼等体却加电主界门利海受听表德少克代员许稜先口由死安写性马光白或住"
    "村镇县乡组书记主任会计校长院医保低殡仪馆火化骨灰盒养老敬院食堂营餐补助贴钱元万块截留挪用侵占私分亲戚朋友关系红包回扣"
    "好处费虚报冒领骗取套乱收强制消推诿扯皮管反映举报投诉领导请查处理希望问题群众集体资产土地征拆迁偿款青苗粮农机项目路审批"
    "执照罚款检企业环境教育招生择校补课服材料医疗药品耗采购患者病人住院卡金社基困难残疾救济庭孩子学生家长老师年级班两三四"
    "五六七八九百千零号电话联系证明标准鱼塘山林承包合同租房屋面积户口名单公示账目开销吃喝招待费用每月季度去今前后又再次多"
    "遍已经没有结果至今无人理睬"
)


def write_tiny_base_model(directory: Path) -> Path:
    """Write a randomly initialised 2-layer BERT and its tokenizer to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    chars = list(dict.fromkeys(c for c in CHARS if not c.isspace()))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "，", "。", "：", "！", "？", *chars]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    # transformers 5 takes the vocabulary itself (a vocab_file argument is ignored, leaving
    # only the special tokens: every character would be [UNK])
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=False,
                                  tokenize_chinese_chars=True)
    tokenizer.save_pretrained(str(directory))
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=4, intermediate_size=37, max_position_embeddings=128)
    BertModel(config).save_pretrained(str(directory))
    return directory
