import pytest

from actions.records.masking import mask_id_number, mask_name, mask_phone
from actions.records.plates import in_jurisdiction, is_valid_vin, normalise_plate, parse_plate, vin_check_digit


@pytest.mark.parametrize("raw, number, kind, code", [
    ("鲁B12345", "鲁B12345", "ordinary", "02"),
    ("鲁b12345", "鲁B12345", "ordinary", "02"),
    ("鲁B·12345", "鲁B12345", "ordinary", "02"),
    ("鲁 B 12345", "鲁B12345", "ordinary", "02"),
    ("鲁Ｂ１２３４５", "鲁B12345", "ordinary", "02"),
    ("魯B12345", "鲁B12345", "ordinary", "02"),
    ("鲁B幺两三四洞", "鲁B12340", "ordinary", "02"),
    ("鲁BD12345", "鲁BD12345", "new_energy_small", "52"),
    ("鲁BFK1234", "鲁BFK1234", "new_energy_small", "52"),
    ("鲁B12345D", "鲁B12345D", "new_energy_large", "51"),
    ("鲁B1234挂", "鲁B1234挂", "trailer", "15"),
    ("鲁B1234學", "鲁B1234学", "driving_school", "16"),
    ("粤Z1234港", "粤Z1234港", "hong_kong", "26"),
    ("WJ鲁12345", "WJ鲁12345", "armed_police", "31"),
])
def test_valid_plates_in_every_written_form(raw, number, kind, code):
    plate = parse_plate(raw)
    assert plate is not None, raw
    assert (plate.number, plate.kind, plate.type_code) == (number, kind, code)


@pytest.mark.parametrize("raw", [
    "", "鲁B1234", "鲁B1234567", "鲁BI2345", "鲁BO2345", "XB1234", "鲁12345", "hello",
    "鲁B12345'; DROP TABLE vehicles;--", "鲁B😀2345", "鲁BD1234X",
])
def test_malformed_plates_are_refused(raw):
    assert parse_plate(raw) is None


def test_jurisdiction_is_by_issuing_office():
    assert in_jurisdiction(parse_plate("鲁B12345"), ["鲁B"])
    assert not in_jurisdiction(parse_plate("鲁A12345"), ["鲁B"])
    assert not in_jurisdiction(parse_plate("京A12345"), ["鲁B"])
    assert in_jurisdiction(parse_plate("鲁U12345"), ["鲁B", "鲁U"])
    assert not in_jurisdiction(parse_plate("WJ鲁12345"), ["鲁B"])


def test_separators_and_full_width_normalise():
    assert normalise_plate(" 鲁　Ｂ－12 345 ") == "鲁B12345"


def test_vin_check_digit():
    # A published example VIN with check digit X at position 9.
    assert vin_check_digit("1M8GDM9AXKP042788") == "X"
    assert is_valid_vin("1M8GDM9AXKP042788")
    assert not is_valid_vin("1M8GDM9A1KP042788")
    assert not is_valid_vin("1M8GDM9AXKP04278O")  # O is never used


@pytest.mark.parametrize("name, masked", [("张晓明", "张*明"), ("张三", "张*"), ("欧阳娜娜", "欧**娜"),
                                          ("王", "*"), ("", "")])
def test_names_are_masked(name, masked):
    assert mask_name(name) == masked


def test_phones_and_ids_are_masked():
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("12345") == "*****"
    assert mask_id_number("370202199001011234") == "3702************34"
