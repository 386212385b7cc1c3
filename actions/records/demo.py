"""Demo records: fictional vehicles, licences and violations, repeatable from a seed.

    python -m actions.records.demo [--if-empty] [--seed N] [--vehicles N]

Every name is made up from a list of common surnames and given-name characters, phone numbers
lie in the unassigned 1990000xxxx block, and ID numbers use a made-up sequence; none is a real
person. A few fixed vehicles (FIXTURES) are always present so that docs and tests can name them.
"""
from __future__ import annotations

import argparse
import csv
import random
import sys
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

from .clock import now_local
from .db import PROJECT_ROOT, make_sync_engine
from .models import Licence, Vehicle, Violation, ViolationCode
from .plates import VIN_CHARS, id_check_char, parse_plate, vin_check_digit

CODES_CSV = PROJECT_ROOT / "data" / "reference" / "violation_codes.csv"

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红娥玲芬燕彬鹏辉斌宇浩凯健俊帆帅旭宁琳晨欣怡佳雪梦瑶婷峰博文昊轩"

PLACES = [
    "市南区香港中路与山东路路口", "市南区东海西路", "市北区辽宁路与延安三路路口", "市北区重庆南路",
    "崂山区海尔路与株洲路路口", "崂山区深圳路", "李沧区黑龙江中路", "李沧区九水东路与书院路路口",
    "黄岛区长江中路", "黄岛区滨海大道", "城阳区正阳路与春阳路路口", "城阳区长城路",
    "胶州湾隧道", "胶州湾大桥", "杭鞍高架路", "环湾路与兴华路路口", "青银高速K12+300",
    "市南区南京路与福州路路口", "市北区敦化路", "即墨区蓝鳌路", "胶州市扬州路", "平度市红旗路",
    "市南区延安三路与太平路路口", "崂山区香港东路",
]
AUTHORITIES = [
    "青岛市公安局交通警察支队市南大队", "青岛市公安局交通警察支队市北大队",
    "青岛市公安局交通警察支队崂山大队", "青岛市公安局交通警察支队李沧大队",
    "青岛市公安局交通警察支队黄岛大队", "青岛市公安局交通警察支队城阳大队",
    "青岛市公安局交通警察支队高速公路大队", "青岛市公安局交通警察支队科技信息处",
]
# World manufacturer identifiers of makers that build in China (first three VIN characters).
WMIS = ["LSV", "LFV", "LGB", "LVS", "LSG", "LHG", "LBV", "LDC", "LGW", "LGX", "LRW", "LNB"]
VEHICLE_TYPES = [("小型普通客车", "非营运", 5, 70), ("小型轿车", "非营运", 5, 18),
                 ("小型普通客车", "预约出租客运", 5, 5), ("中型普通客车", "公路客运", 19, 2),
                 ("重型半挂牵引车", "货运", 2, 3), ("轻型普通货车", "货运", 3, 2)]
LICENCE_CLASSES = [("C1", 80), ("C2", 12), ("B2", 4), ("A2", 2), ("A1", 1), ("D", 1)]
# How often each violation category turns up in a city's records.
CATEGORY_WEIGHTS = {"parking": 30, "signal": 12, "speeding": 14, "marking": 9, "sign": 7,
                    "lane": 8, "phone": 4, "seatbelt": 4, "pedestrian": 5, "lights": 2,
                    "inspection": 1, "plate": 1, "licence": 0.3, "drink": 0.3, "helmet": 0,
                    "other": 2}


@dataclass(frozen=True)
class Fixture:
    """A vehicle that is always in the demo records, named in the README and the tests."""
    plate: str
    vin_suffix: str
    engine_suffix: str
    owner: str
    unprocessed: tuple[str, ...]  # violation codes still to be processed
    paid: tuple[str, ...] = ()


FIXTURES = (
    Fixture("鲁B12345", "672418", "719034", "张晓明", ("1625", "1039", "1223"), ("1352",)),
    Fixture("鲁BD12345", "305517", "K55210", "李芳芳", ("1357",)),
    Fixture("鲁B88888", "880123", "661002", "王建国", (), ("1039", "1116")),
    Fixture("鲁B12345D", "504871", "T90317", "赵海涛", ("1622", "1019")),
)


@dataclass(frozen=True)
class LicenceFixture:
    licence_no: str
    file_no: str
    holder: str
    points: int
    first_issued_days_ago: int


LICENCE_FIXTURES = (
    LicenceFixture("370202199003071233", "370200900001", "张晓明", 6, 11 * 365 + 40),
    LicenceFixture("370202198511120041", "370200900002", "李芳芳", 12, 16 * 365 + 100),
    LicenceFixture("37020220030521002X", "370200900003", "赵海涛", 3, 120),  # still in probation
)


def load_codes(path: Path = CODES_CSV) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for key in ("points", "fine_min", "fine_max", "fine_default"):
            row[key] = int(row[key])
    return rows


class Generator:
    def __init__(self, seed: int, today: date, issuer: str = "鲁B") -> None:
        self.rng = random.Random(seed)
        self.today = today
        self.issuer = issuer
        self.used_plates: set[str] = set()
        self.used_vins: set[str] = set()
        self.used_licences: set[str] = set()
        self.serial = 0

    def name(self) -> str:
        r = self.rng
        return r.choice(SURNAMES) + "".join(r.choice(GIVEN) for _ in range(r.choice((1, 2, 2))))

    def phone(self) -> str:
        return f"1990000{self.rng.randint(0, 9999):04d}"

    def plate(self) -> str:
        r = self.rng
        letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
        while True:
            roll = r.random()
            if roll < 0.18:  # new energy, small car
                tail = r.choice("DF") + r.choice(letters + "0123456789") + f"{r.randint(0, 9999):04d}"
            elif roll < 0.20:  # new energy, large vehicle
                tail = f"{r.randint(0, 99999):05d}" + r.choice("DF")
            else:  # ordinary: 5 characters, at most two of them letters
                chars = [r.choice("0123456789") for _ in range(5)]
                for pos in r.sample(range(5), r.choice((0, 1, 1, 2))):
                    chars[pos] = r.choice(letters)
                tail = "".join(chars)
            plate = self.issuer + tail
            if plate not in self.used_plates and parse_plate(plate) is not None:
                self.used_plates.add(plate)
                return plate

    def vin(self, suffix: str | None = None) -> str:
        r = self.rng
        while True:
            body = r.choice(WMIS) + "".join(r.choice(VIN_CHARS) for _ in range(5))
            serial = suffix or f"{r.randint(0, 999999):06d}"
            tail = r.choice("NPRS") + r.choice("0123456789ABC") + serial  # model year, plant, serial
            vin = body + "0" + tail
            vin = vin[:8] + vin_check_digit(vin) + vin[9:]
            if vin not in self.used_vins:
                self.used_vins.add(vin)
                return vin

    def engine_no(self, suffix: str | None = None) -> str:
        r = self.rng
        head = "".join(r.choice("ABCDEFGHJKLMNPRSTUVWXYZ0123456789") for _ in range(r.choice((2, 3, 4))))
        return head + (suffix or "".join(r.choice("0123456789") for _ in range(6)))

    def vehicle(self, plate: str | None = None, vin_suffix: str | None = None,
                engine_suffix: str | None = None, owner: str | None = None) -> dict:
        r = self.rng
        kinds = VEHICLE_TYPES
        vtype, use, seats, _ = r.choices(kinds, weights=[k[3] for k in kinds])[0]
        plate = plate or self.plate()
        self.used_plates.add(plate)
        registered = self.today - timedelta(days=r.randint(30, 15 * 365))
        return dict(
            plate=plate, plate_type=parse_plate(plate).type_code, vin=self.vin(vin_suffix),
            engine_no=self.engine_no(engine_suffix), vehicle_type=vtype, use_nature=use, seats=seats,
            owner_name=owner or self.name(), owner_phone=self.phone(), registered_on=registered,
            inspection_due=inspection_due(registered, use, self.today),
        )

    def fixed_licence(self, fx: "LicenceFixture") -> dict:
        first = self.today - timedelta(days=fx.first_issued_days_ago)
        self.used_licences.add(fx.licence_no)
        years = (self.today - first).days // 365
        return dict(licence_no=fx.licence_no, file_no=fx.file_no, holder_name=fx.holder,
                    holder_phone=self.phone(), licence_class="C1", first_issued=first,
                    cycle_start=_anniversary_on_or_before(first, self.today), points=fx.points,
                    expires_on=_add_years(first, 6 if years < 6 else 16), status="valid")

    def licence(self) -> dict:
        r = self.rng
        self.serial += 1
        while True:
            born = date(1960, 1, 1) + timedelta(days=r.randint(0, 40 * 365))
            body = f"370202{born:%Y%m%d}{r.randint(0, 999):03d}"
            licence_no = body + id_check_char(body)
            if licence_no not in self.used_licences:
                self.used_licences.add(licence_no)
                break
        first = max(_add_years(born, 18) + timedelta(days=r.randint(0, 3000)),
                    self.today - timedelta(days=r.randint(60, 25 * 365)))
        years = (self.today - first).days // 365
        cycle_start = _anniversary_on_or_before(first, self.today)
        klass = r.choices([c for c, _ in LICENCE_CLASSES], weights=[w for _, w in LICENCE_CLASSES])[0]
        validity = 6 if years < 6 else (16 if years < 16 else 60)
        return dict(
            licence_no=licence_no, file_no=f"3702{self.serial:08d}", holder_name=self.name(),
            holder_phone=self.phone(), licence_class=klass, first_issued=first, cycle_start=cycle_start,
            points=r.choices([0, 1, 2, 3, 4, 6, 7, 9, 12], weights=[60, 10, 5, 8, 4, 6, 3, 2, 1])[0],
            expires_on=_add_years(first, validity), status="valid",
        )

    def violation(self, vehicle_id: int, code: dict, status: str | None = None,
                  record_no: int = 0, recent: bool = False) -> dict:
        r = self.rng
        days_ago = r.randint(1, 60) if recent else r.randint(1, 540)
        occurred = datetime.combine(self.today - timedelta(days=days_ago), datetime.min.time()) + \
            timedelta(minutes=r.randint(6 * 60, 23 * 60))
        if status is None:
            status = "unprocessed" if days_ago < 45 and r.random() < 0.7 else \
                r.choices(["paid", "processed", "unprocessed"], weights=[85, 5, 10])[0]
        processed = occurred + timedelta(days=r.randint(5, 30)) if status != "unprocessed" else None
        return dict(
            record_no=f"3702{record_no:012d}", vehicle_id=vehicle_id, occurred_at=occurred,
            place=r.choice(PLACES), code=code["code"], description=code["description"],
            fine=code["fine_default"], points=code["points"], authority=r.choice(AUTHORITIES),
            status=status, recorded_at=occurred + timedelta(days=r.randint(1, 5)),
            processed_at=processed,
            decision_no=f"370200{r.randint(10**9, 10**10 - 1)}" if processed else None,
            paid_at=processed if status == "paid" else None, late_fee=0,
        )


def _add_years(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


def _anniversary_on_or_before(first: date, today: date) -> date:
    candidate = _add_years(first, today.year - first.year)
    return candidate if candidate <= today else _add_years(first, today.year - first.year - 1)


def inspection_due(registered: date, use_nature: str, today: date) -> date:
    """The next inspection date: private cars in years 6 and 10, then yearly; others yearly."""
    if use_nature == "非营运":
        age_years = {6, 10} | set(range(11, 60))
        years = [y for y in sorted(age_years) if _add_years(registered, y) >= today - timedelta(days=90)]
        # Between the tests a sticker is due every 2 years; the record carries the next due date.
        stickers = [y for y in (2, 4) if _add_years(registered, y) >= today - timedelta(days=90)]
        return _add_years(registered, min(years[:1] + stickers))
    years = 1
    while _add_years(registered, years) < today - timedelta(days=90):
        years += 1
    return _add_years(registered, years)


def build(seed: int, vehicles: int, licences: int, today: date, codes: list[dict]) -> dict:
    """All demo rows, as dictionaries per table; the same seed gives the same rows."""
    gen = Generator(seed, today)
    by_code = {c["code"]: c for c in codes}
    categories = sorted({c["category"] for c in codes})
    weights = [CATEGORY_WEIGHTS.get(cat, 1) for cat in categories]
    vehicle_rows, violation_rows = [], []
    record_no = 0

    for fx in FIXTURES:
        vehicle_rows.append(gen.vehicle(fx.plate, fx.vin_suffix, fx.engine_suffix, fx.owner))
        vid = len(vehicle_rows)
        for code in fx.unprocessed:
            record_no += 1
            violation_rows.append(gen.violation(vid, by_code[code], "unprocessed", record_no, recent=True))
        for code in fx.paid:
            record_no += 1
            violation_rows.append(gen.violation(vid, by_code[code], "paid", record_no))
    for _ in range(vehicles - len(FIXTURES)):
        vehicle_rows.append(gen.vehicle())
        vid = len(vehicle_rows)
        for _ in range(gen.rng.choices(range(7), weights=[35, 25, 15, 10, 7, 5, 3])[0]):
            record_no += 1
            cat = gen.rng.choices(categories, weights=weights)[0]
            code = gen.rng.choice([c for c in codes if c["category"] == cat])
            violation_rows.append(gen.violation(vid, code, None, record_no))
    for i, row in enumerate(vehicle_rows, start=1):
        row["id"] = i
    return {
        "violation_codes": codes,
        "vehicles": vehicle_rows,
        "licences": [gen.fixed_licence(fx) for fx in LICENCE_FIXTURES]
                    + [gen.licence() for _ in range(licences - len(LICENCE_FIXTURES))],
        "violations": violation_rows,
    }


def seed(url: str | None = None, *, seed_value: int = 20221001, vehicles: int = 3000,
         licences: int = 2000, if_empty: bool = False, today: date | None = None) -> dict:
    """Insert the demo records; returns the row count per table (zeros if skipped)."""
    engine = make_sync_engine(url)
    try:
        with engine.begin() as conn:
            existing = conn.execute(select(func.count()).select_from(Vehicle.__table__)).scalar_one()
            if existing and if_empty:
                return {}
            rows = build(seed_value, vehicles, licences, today or now_local().date(), load_codes())
            for model in (ViolationCode, Vehicle, Licence, Violation):
                table = model.__table__
                batch = rows[table.name]
                for start in range(0, len(batch), 1000):
                    conn.execute(insert(table), batch[start:start + 1000])
            if conn.dialect.name == "postgresql":  # explicit ids leave the sequence behind
                conn.exec_driver_sql("SELECT setval('vehicles_id_seq', (SELECT max(id) FROM vehicles))")
        return {name: len(batch) for name, batch in rows.items()}
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fill the records database with demo data.")
    parser.add_argument("--seed", type=int, default=20221001)
    parser.add_argument("--vehicles", type=int, default=3000)
    parser.add_argument("--licences", type=int, default=2000)
    parser.add_argument("--if-empty", action="store_true", help="do nothing if vehicles exist")
    args = parser.parse_args(argv)
    counts = seed(seed_value=args.seed, vehicles=args.vehicles, licences=args.licences,
                  if_empty=args.if_empty)
    if not counts:
        print("demo records: already present, left as they are")
    else:
        print("demo records: " + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
