"""The assistant's Chinese replies about records: pure formatting, masking applied here."""
from __future__ import annotations

from datetime import datetime
from typing import Sequence

from actions.records.masking import mask_name
from actions.records.queries import ViolationRow

STATUS_TEXT = {"unprocessed": "未处理", "processed": "已处理未缴款", "paid": "已缴款"}


def when(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M}"


def violations_list(plate: str, owner: str, rows: Sequence[ViolationRow], max_listed: int) -> str:
    if not rows:
        return f"{plate}（车主 {mask_name(owner)}）目前没有未处理的交通违法记录。"
    lines = [f"{plate}（车主 {mask_name(owner)}）有 {len(rows)} 条未处理的交通违法记录："]
    for i, row in enumerate(rows[:max_listed], start=1):
        lines.append(f"{i}. {when(row.occurred_at)} {row.place}")
        lines.append(f"   {row.behaviour}（代码{row.code}），罚款 {row.fine} 元，记 {row.points} 分，"
                     f"{STATUS_TEXT.get(row.status, row.status)}")
    if len(rows) > max_listed:
        lines.append(f"……另有 {len(rows) - max_listed} 条未列出，请在交管12123 App查看全部。")
    lines.append(f"合计：罚款 {sum(r.fine for r in rows)} 元，记 {sum(r.points for r in rows)} 分。")
    lines.append("可通过交管12123 App或到任一交警大队、车管所处理，逾期缴款每日加处罚款3%。")
    return "\n".join(lines)


def locked_out(until: datetime) -> str:
    return (f"验证错误次数过多，为保护车主信息，查询已暂时锁定，将于 {when(until)} 解除。"
            "如确属本人车辆，可携带行驶证到交警大队窗口查询。")


def wrong_proof(left: int, length: int) -> str:
    return f"车架号或发动机号后{length}位不正确，您还可以再试 {left} 次。"


def malformed_proof(length: int) -> str:
    return f"车架号或发动机号后{length}位应为{length}个字母或数字（如 672418），请重新输入。"


def malformed_plate(text: str) -> str:
    shown = text if len(text) <= 12 else text[:12] + "…"
    return (f"“{shown}”不是有效的车牌号。车牌由省份简称、发牌机关字母和5位（新能源车6位）"
            "字母或数字组成，例如 鲁B12345、鲁BD12345，请重新输入。")


def outside_jurisdiction(plate: str, city: str) -> str:
    return (f"{plate} 不是{city}核发的号牌，本助手只能查询本市车辆。"
            "外地车辆的违法记录请通过交管12123 App或发牌地交警部门查询。")


def unknown_plate(plate: str, city: str) -> str:
    return f"没有找到 {plate} 的{city}机动车登记记录，请核对车牌号后重新输入。"
