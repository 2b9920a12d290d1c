from ehub.masking import mask_id_number, mask_license_document, mask_name, mask_phone


def test_masks() -> None:
    assert mask_name("张三") == "张*"
    assert mask_name("欧阳娜娜") == "欧***"
    assert mask_id_number("11010519491231002X") == "110105********002X"
    assert mask_phone("13812345678") == "138****5678"


def test_license_document_masks_person_fields_only() -> None:
    doc = {
        "CZZT": "烟台某某科技有限公司",
        "CZZTDM": "91370602MA3C12345X",
        "CZZTDMLXDM": "001",
        "KZ": {"KZ_FDDBR": "王小明", "KZ_ZS": "芝罘区"},
    }
    out = mask_license_document(doc)
    assert out["CZZT"] == doc["CZZT"]
    assert out["KZ"] == {"KZ_FDDBR": "王**", "KZ_ZS": "芝罘区"}
    person = {"CZZT": "李四", "CZZTDM": "11010519491231002X", "CZZTDMLXDM": "111", "KZ": {}}
    masked = mask_license_document(person)
    assert masked["CZZT"] == "李*" and masked["CZZTDM"] == "110105********002X"
    assert doc["KZ"]["KZ_FDDBR"] == "王小明"  # the input is not modified
