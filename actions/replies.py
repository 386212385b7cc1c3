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


def already_bound(plate: str) -> str:
    return f"{plate} 已经绑定在您的账号下，无需重复绑定。发送“查违章”即可直接查询。"


def binding_limit(limit: int) -> str:
    return f"每人最多绑定 {limit} 辆车，您已达到上限。请先发送“解绑”加车牌号解除一辆，再绑定新车。"


def vehicle_bound(plate: str) -> str:
    return (f"绑定成功：{plate} 已加入您的车辆。以后查询违章无需再验证；"
            "发送“订阅提醒”可在该车有新的违法记录时收到通知。")


def vehicle_unbound(plate: str) -> str:
    return f"已解除 {plate} 的绑定，该车的违法提醒也不再发送给您。"


def not_bound(plate: str) -> str:
    return f"{plate} 不在您绑定的车辆中。发送“我的绑定”可查看已绑定的车辆。"


def nothing_bound() -> str:
    return "您还没有绑定车辆或驾驶证。发送“绑定车辆”或“绑定驾驶证”即可开始。"


def malformed_licence() -> str:
    return "驾驶证号即18位身份证号码（最后一位可能是X），您输入的号码格式不对，请核对后重新输入。"


def unknown_licence(city: str) -> str:
    return f"没有找到该驾驶证的{city}档案记录，请核对号码。外地核发的驾驶证请通过交管12123 App查询。"


def malformed_file_no() -> str:
    return "档案编号是12位数字，印在驾驶证副页上，请核对后重新输入。"


def wrong_file_no(left: int) -> str:
    return f"档案编号与驾驶证号不符，您还可以再试 {left} 次。"


def licence_bound() -> str:
    return "驾驶证绑定成功。以后发送“我还有几分”即可直接查询记分，无需再验证。"


def licence_already_bound() -> str:
    return "这本驾驶证已经绑定在您的账号下，无需重复绑定。"


def points_summary(licence, today) -> str:
    from actions.records.masking import mask_id_number

    cycle_end = _cycle_end(licence.cycle_start)
    left = max(12 - licence.points, 0)
    lines = [f"驾驶证 {mask_id_number(licence.licence_no)}（{mask_name(licence.holder_name)}）",
             f"本记分周期：{licence.cycle_start:%Y-%m-%d} 至 {cycle_end:%Y-%m-%d}",
             f"已记 {licence.points} 分，剩余 {left} 分（满分12分）。"]
    if licence.points >= 12:
        lines.append("已达到12分：驾驶证将被扣留，需参加7天道路交通安全法律法规学习（大中型客货车驾驶人30天），"
                     "并参加科目一考试；再次满分或累计24分以上的还需考科目三。满12分不能学法减分。")
    elif licence.points == 0:
        lines.append("当前没有记分，无需学法减分。周期结束时记分为0且无未缴罚款，记分清除。")
    else:
        in_probation = (today - licence.first_issued).days < 365
        if in_probation:
            lines.append("学法减分：您仍在实习期内，不能申请学法减分。")
        else:
            lines.append("学法减分：可以申请（本周期最多减6分）。网上学习满30分钟并考试合格减1分；"
                         "现场学习满1小时并考试合格减2分；参加1小时交通安全公益活动减1分。"
                         "近3个记分周期有饮酒驾驶、肇事逃逸、买卖记分等情形，或有未处理违法、逾期未检验的除外。")
        lines.append("周期结束时未满12分且罚款已缴清的，记分清除；有未缴罚款的，记分转入下一周期。")
    lines.append("依据：《道路交通安全违法行为记分管理办法》（2022年4月1日起施行），以交管12123 App为准。")
    return "\n".join(lines)


def _cycle_end(start):
    from datetime import timedelta

    try:
        return start.replace(year=start.year + 1) - timedelta(days=1)
    except ValueError:
        return start.replace(year=start.year + 1, day=28) - timedelta(days=1)


def subscribe_there(name: str) -> str:
    return f"{name}提醒需要在{name}里订阅：请在{name}向我们发送“订阅提醒”。也可以选择本渠道、短信或电子邮件。"


def channel_not_offered(name: str) -> str:
    return (f"暂不支持通过{name}发送提醒。提醒可以发到：本渠道、短信或电子邮件；微信、微博私信和Telegram"
            "也可以在对应账号里发送“订阅提醒”。请回复：1 就用这里，2 短信，3 电子邮件。")


def subscribed(name: str, channel: str, address: str | None, has_vehicle: bool) -> str:
    from actions.records.masking import mask_phone

    where = name
    if channel == "sms" and address:
        where += f"（{mask_phone(address)}）"
    elif channel == "email" and address:
        where += f"（{address}）"
    lines = [f"订阅成功：违法提醒、年检提醒、驾驶证到期提醒和举报结果通知将通过{where}发送。"]
    if channel == "sms":
        lines.append("短信在22:00至次日8:00不打扰；回复“退订”或“TD”可随时取消。")
    else:
        lines.append("发送“退订”可随时取消。")
    if not has_vehicle:
        lines.append("您还没有绑定车辆：发送“绑定车辆”后，才能收到该车的违法提醒。")
    return "\n".join(lines)


def unsubscribed(count: int, name: str) -> str:
    if count == 0:
        return "您目前没有订阅任何提醒，无需退订。"
    where = f"通过{name}发送的" if name else "全部"
    return f"已退订{where}提醒，之后不再发送。如需恢复，发送“订阅提醒”即可。"


def sms_opted_out() -> str:
    return "已退订：本号码不再接收交警助手的提醒短信。回复“订阅”可恢复。"


REPORT_STATUS_TEXT = {"received": "已收到，待审核", "dispatched": "已派单处理", "accepted": "已采纳",
                      "rejected": "未采纳", "fixed": "已修复"}
REPORT_KIND_TEXT = {"facility": "设施报修", "violation": "违法举报", "misconduct": "违规线索"}


def evidence_rules() -> str:
    return ("随手拍举报需要至少一张照片或一段视频作为证据：视频5-20秒且连续，行驶中的违法要能看出车辆位移，"
            "违停视频需超过12秒；或2-3张照片，违停照片间隔10秒以上。号牌、车辆、违法行为和相关标志标线要清晰可见，"
            "请在24小时内上传。请直接发送照片或视频；没有证据可回复“取消”。")


def report_received(kind: str, number: str, photos: int) -> str:
    if kind == "facility":
        return (f"报修已受理，编号 {number}（附照片 {photos} 张）。一般24小时内派单、72小时内答复处理结果，"
                "处理进展会通知您。发送“查询举报”加编号可随时查看进度。")
    if kind == "violation":
        return (f"举报已收到，编号 {number}（附证据 {photos} 份）。每条举报都由民警人工审核，"
                "审核结果会通知您；发送“查询举报”加编号可查看进度。")
    return (f"线索已记录，编号 {number}，我们会转交纪检和相关部门核查，并为您保密。\n"
            "提醒：驾考全程身份核验和录像，考官随机分配、系统自动评判，“驾考包过”都是诈骗；"
            "买卖驾驶证记分属违法行为，替人记分者记12分并处违法所得最高3倍、最多5万元罚款，组织者最高5倍、最多10万元。"
            "如已被骗请拨打110报警。")


def report_not_found(number: str) -> str:
    return f"没有找到您提交的编号为 {number} 的举报，请核对编号。发送“我的举报”可查看您提交过的举报。"


def report_statuses(reports) -> str:
    if not reports:
        return "您还没有提交过举报或报修。发送“我要举报”或“红绿灯坏了”等即可开始。"
    lines = ["您的举报：" if len(reports) > 1 else "举报进度："]
    for r in reports:
        line = (f"{r.report_no} {REPORT_KIND_TEXT.get(r.kind, r.kind)} {r.created_at:%m-%d %H:%M} "
                f"{REPORT_STATUS_TEXT.get(r.status, r.status)}")
        if r.status == "rejected" and r.reject_reason:
            line += f"（原因：{r.reject_reason}）"
        lines.append(line)
    return "\n".join(lines)


def report_stats(stats) -> str:
    if stats.made == 0:
        return "您还没有提交过举报。随手拍举报交通违法、报修信号灯和标志标线，都会计入您的统计。"
    lines = [f"您共提交举报 {stats.made} 条，已采纳 {stats.accepted} 条，采纳率 {stats.rate:.0%}。"]
    if stats.rank:
        lines.append(f"本月已采纳 {stats.month_accepted} 条，在 {stats.reporters} 位举报人中排名第 {stats.rank}。")
    else:
        lines.append("本月还没有被采纳的举报。")
    return "\n".join(lines)


def appointment_booked(number: str, kind: str, when: str, phone: str) -> str:
    from actions.records.masking import mask_phone

    return (f"预约成功：{kind}远程视频处理，预约号 {number}，时间 {when}，联系电话 {mask_phone(phone)}。"
            "届时民警将通过视频与您联系，请提前准备好驾驶证、行驶证，并保持电话畅通。如需取消请发送“转人工”。")


CHANNEL_TEXT = {"wechat": "微信公众号", "weibo": "微博私信", "sms": "短信", "telegram": "Telegram",
                "rest": "网页"}


def link_code_issued(code: str) -> str:
    return (f"您的关联码是 {code}，10分钟内有效，只能用一次。\n请在要关联的另一个渠道（微信公众号、微博私信、"
            f"短信或Telegram）发送“关联 {code}”，两边的绑定车辆、驾驶证、订阅和举报记录就会合并。"
            "关联码请勿告诉他人。")


def channels_linked(other: str | None, plates: list[str], licences: int) -> str:
    lines = [f"关联成功：本渠道与{CHANNEL_TEXT.get(other or '', '另一渠道')}已是同一账号。"]
    if plates:
        lines.append("已绑定车辆：" + "、".join(plates) + "，查违章无需再验证。")
    if licences:
        lines.append(f"已绑定驾驶证 {licences} 本，查记分无需再验证。")
    return "\n".join(lines)


def link_code_invalid(left: int) -> str:
    return (f"关联码不正确或已过期（有效期10分钟，只能用一次），还可尝试 {left} 次。"
            "请在另一个渠道发送“关联账号”获取新的关联码。")


def link_code_refused(status: str) -> str:
    if status == "own_code":
        return "这个关联码是在本渠道生成的，请到另一个渠道（如微信公众号或短信）发送“关联”加关联码。"
    return "这两个渠道已经是同一账号，无需再次关联。"
