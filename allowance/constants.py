"""Constants defined once: districts, channels, reason codes, exit codes."""

from __future__ import annotations

# SPEC §7: the 16 hukou districts that pay (区民政部门, 五). Never derived from the ID number.
DISTRICTS: dict[str, str] = {
    "310101": "黄浦区",
    "310104": "徐汇区",
    "310105": "长宁区",
    "310106": "静安区",
    "310107": "普陀区",
    "310109": "虹口区",
    "310110": "杨浦区",
    "310112": "闵行区",
    "310113": "宝山区",
    "310114": "嘉定区",
    "310115": "浦东新区",
    "310116": "金山区",
    "310117": "松江区",
    "310118": "青浦区",
    "310120": "奉贤区",
    "310151": "崇明区",
}
DISTRICT_CODES: tuple[str, ...] = tuple(DISTRICTS)

# 四: paid through the senior card (敬老卡) or the social security card (社保卡).
CHANNELS: tuple[str, ...] = ("senior_card", "social_security_card")

# SPEC §3 quarantine reason codes, in the order a row is judged (first failing wins as `reason`).
QUARANTINE_REASONS: tuple[str, ...] = (
    "MISSING_FIELD",  # a required field is empty
    "ID_FORMAT",  # not 18 (or legacy 15) characters of the right shape, or no valid date inside
    "ID_CHECKSUM",  # GB 11643-1999 check digit wrong
    "BAD_DATE",  # a date column that cannot be read as a date
    "BIRTH_MISMATCH",  # birth_date differs from the date inside the ID
    "BIRTH_IN_FUTURE",  # born after the run's as-of date
    "AGE_IMPLAUSIBLE",  # over MAX_AGE_ALIVE in the as-of month, alive or at an end no month was paid at
    "DEATH_BEFORE_BIRTH",
    "HUKOU_DATES",  # moved in before birth, or moved out before moving in
    "FUTURE_FACT",  # a death or hukou date after the as-of date (SPEC §4: never used early)
    "UNKNOWN_DISTRICT",  # not one of the 16 codes of SPEC §7
    "BAD_CHANNEL",  # channel not one of CHANNELS
    "CARD_MISSING",  # a channel without a card number
    "BAD_CARD",  # a card number that is not digits
    "BAD_NAME",  # a control character (C0, DEL, C1, U+2028/9, U+FFFD), over NAME_MAX_BYTES, no character
    # that prints (zero-width ones only), or an export's null marker (NULL, \N) for a name
    "DUPLICATE_ID",  # the same person twice in one extract: every such row is quarantined
)

# Engine rule (audit 18C: a resident born in 1800 was paid 600 yuan a month, with arrears): no one
# alive is older than this. The oldest person ever verified died at 122; Shanghai's oldest
# residents have been 110-odd. A row that makes someone over it in the as-of date's month (SPEC
# §1's age), alive and registered, or dead or moved out at MAX_AGE_ALIVE + 2 or over, carries a
# wrong birth date or an unrecorded death, and is quarantined as AGE_IMPLAUSIBLE for the district
# to check. A death or move out at MAX_AGE_ALIVE + 1 is not judged: its recovery must go through
# (audit 19A: a death at 121 of someone paid at 120 went unrecovered). Were a resident ever
# verified older, this is the number to raise.
MAX_AGE_ALIVE = 120

# Engine rule: the longest name a bank line carries, in bytes of UTF-8 (100 Chinese characters).
# No registered name comes near it; a longer one is an export fault (an audit had 100 000 characters).
NAME_MAX_BYTES = 300

# SPEC §5: why a line exists.
LINE_REASONS: tuple[str, ...] = ("NEW", "CONTINUING", "BAND_CHANGE", "ARREARS", "REISSUE", "RECOVERY")

# Why a recovery line exists.
RECOVERY_CAUSES: tuple[str, ...] = ("DEATH", "MIGRATION", "AMOUNT_CORRECTION", "NOT_ENTITLED", "NOT_IN_EXTRACT")

# Exit codes shared by the CLI and the pipelines.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_REFUSED = 2
EXIT_INTERRUPTED = 130  # Ctrl-C: SIGINT's status, as a shell reports it
EXIT_TERMINATED = 143  # SIGTERM's status (systemctl stop, a shutdown), as a shell reports it

# Registry columns (SPEC §3).
REGISTRY_COLUMNS: tuple[str, ...] = (
    "person_id",
    "name",
    "birth_date",
    "district_code",
    "hukou_since",
    "hukou_out_date",
    "death_date",
    "channel",
    "card_no",
)
REQUIRED_COLUMNS: tuple[str, ...] = ("person_id", "name", "birth_date", "district_code")
DATE_COLUMNS: tuple[str, ...] = ("birth_date", "hukou_since", "hukou_out_date", "death_date")

# Rows per Parquet row group in every file the engine writes. Given explicitly, a file's bytes
# depend on its rows alone; left to the writer, they followed how the frame happened to be
# chunked in memory, and the same rows could give another file (and another SHA-256).
PARQUET_ROW_GROUP_ROWS = 1 << 18
