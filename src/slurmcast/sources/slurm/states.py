"""Slurm job and node states, from every spelling the tools print, to the model's enums.

Jobs: Slurm keeps a base state plus flags and its tools print one word, a
recognised flag winning over the base (``job_state_string()`` in
``src/common/slurm_protocol_defs.c``). Nodes: a base state plus flags, shown by
sinfo as one derived word plus a suffix character (``node_state_string()``);
the precedence used here is that function's, as summarised in
``reference/slurm.md`` section 5.2.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from slurmcast.core.records import NOT_RESPONDING, JobState, NodeState

# --------------------------------------------------------------------------- jobs

#: squeue ``%t`` / ``StateCompact`` codes (squeue.1 "JOB STATE CODES").
JOB_STATE_CODES: Mapping[str, JobState] = {
    "PD": JobState.PENDING,
    "R": JobState.RUNNING,
    "S": JobState.SUSPENDED,
    "CG": JobState.COMPLETING,
    "CF": JobState.CONFIGURING,
    "CD": JobState.COMPLETED,
    "CA": JobState.CANCELLED,
    "F": JobState.FAILED,
    "TO": JobState.TIMEOUT,
    "NF": JobState.NODE_FAIL,
    "PR": JobState.PREEMPTED,
    "BF": JobState.BOOT_FAIL,
    "DL": JobState.DEADLINE,
    "OOM": JobState.OUT_OF_MEMORY,
    "RQ": JobState.REQUEUED,
    "RH": JobState.REQUEUE_HOLD,
    "RF": JobState.REQUEUE_FED,
    "RD": JobState.RESV_DEL_HOLD,
    "RS": JobState.RESIZING,
    "RV": JobState.REVOKED,
    "SI": JobState.SIGNALING,
    "SE": JobState.SPECIAL_EXIT,
    "SO": JobState.STAGE_OUT,
    "ST": JobState.STOPPED,
}

#: Flags in the order ``job_state_string()`` tests them: the first one present
#: is printed instead of the base state.
JOB_FLAG_PRECEDENCE: tuple[JobState, ...] = (
    JobState.COMPLETING,
    JobState.STAGE_OUT,
    JobState.CONFIGURING,
    JobState.RESIZING,
    JobState.REQUEUED,
    JobState.REQUEUE_FED,
    JobState.REQUEUE_HOLD,
    JobState.SPECIAL_EXIT,
    JobState.STOPPED,
    JobState.REVOKED,
    JobState.RESV_DEL_HOLD,
    JobState.SIGNALING,
)

#: Base states: every state the model knows that is not a flag (nor UNKNOWN,
#: the model's own word for what Slurm did not say). Derived, not listed, so
#: the model's enum stays the one list of job states.
_JOB_BASE_STATES = frozenset(JobState) - frozenset(JOB_FLAG_PRECEDENCE) - {JobState.UNKNOWN}

#: Every word that names a job state: full names and compact codes.
_JOB_WORDS: dict[str, JobState] = {
    **{state.value: state for state in JobState},
    **JOB_STATE_CODES,
}


def job_state_from_code(code: str) -> JobState:
    """Map a compact squeue/sacct code (``PD``, ``R``, ``CG``, ``OOM``...) to a state.

    Args:
        code: the code, any case, surrounding blanks ignored.

    Returns:
        The state; UNKNOWN for a code Slurm may add later.
    """
    return JOB_STATE_CODES.get(code.strip().upper(), JobState.UNKNOWN)


def parse_job_state(value: str | Sequence[str]) -> JobState:
    """Map any spelling of a job state to the state squeue would print.

    Accepts full names (``RUNNING``), compact codes (``R``), sacct's
    ``CANCELLED by 1234`` and its truncated ``CANCELLED+``, comma-joined
    base+flags (``RUNNING,COMPLETING``) and REST arrays
    (``["PENDING", "REQUEUED"]``). With several words, a recognised flag wins
    over the base state, as in ``job_state_string()``.

    Args:
        value: a string or a sequence of state names.

    Returns:
        The state; UNKNOWN for anything unrecognised (never raises).
    """
    if isinstance(value, str):
        state = _JOB_WORDS.get(value)
        if state is not None:
            return state
        text = value.strip().upper()
        if "," in text:
            return _job_state_from_words(text.split(","))
        # sacct: "CANCELLED by 0"; fixed-width sacct/squeue: "CANCELLED+".
        word = text.split(" ", 1)[0].rstrip("+")
        return _JOB_WORDS.get(word, JobState.UNKNOWN)
    return _job_state_from_words(value)


def _job_state_from_words(words: Iterable[str]) -> JobState:
    found: set[JobState] = set()
    for word in words:
        state = _JOB_WORDS.get(str(word).strip().upper())
        if state is not None:
            found.add(state)
    for flag in JOB_FLAG_PRECEDENCE:
        if flag in found:
            return flag
    for state in found:
        if state in _JOB_BASE_STATES:
            return state
    return JobState.UNKNOWN


# -------------------------------------------------------------------------- nodes

#: Node base states (``node_states[]`` in slurm_protocol_defs.c).
NODE_BASE_STATES = frozenset({"DOWN", "IDLE", "ALLOCATED", "ERROR", "MIXED", "FUTURE", "UNKNOWN"})

#: Flag names as the REST API / ``scontrol`` / ``sinfo -O StateComplete`` print them.
DRAIN = "DRAIN"
COMPLETING = "COMPLETING"
FAIL = "FAIL"
MAINTENANCE = "MAINTENANCE"
INVALID_REG = "INVALID_REG"
REBOOT_REQUESTED = "REBOOT_REQUESTED"
REBOOT_ISSUED = "REBOOT_ISSUED"
RESERVED = "RESERVED"
PLANNED = "PLANNED"
POWERED_DOWN = "POWERED_DOWN"
POWERING_UP = "POWERING_UP"
POWERING_DOWN = "POWERING_DOWN"
POWER_DOWN = "POWER_DOWN"
CLOUD = "CLOUD"
RESUME = "RESUME"

#: sinfo's suffix characters (sinfo.1 "NODE STATE CODES") and the flag each means.
NODE_STATE_SUFFIXES: Mapping[str, str] = {
    "*": NOT_RESPONDING,
    "~": POWERED_DOWN,
    "#": POWERING_UP,
    "!": POWER_DOWN,
    "%": POWERING_DOWN,
    "$": MAINTENANCE,
    "@": REBOOT_REQUESTED,
    "^": REBOOT_ISSUED,
    "-": PLANNED,
}

# Flags that node_state_string() prints as a suffix: when one is present an idle
# node shows "IDLE<suffix>" instead of RESERVED/PLANNED.
_SUFFIX_FLAGS = frozenset(NODE_STATE_SUFFIXES.values())

#: Base-state words in every spelling (REST lower case, sinfo long and compact).
_BASE_WORDS: dict[str, str] = {
    "IDLE": "IDLE",
    "MIXED": "MIXED",
    "MIX": "MIXED",
    "ALLOCATED": "ALLOCATED",
    "ALLOC": "ALLOCATED",
    "DOWN": "DOWN",
    "FUTURE": "FUTURE",
    "FUTR": "FUTURE",
    "UNKNOWN": "UNKNOWN",
    "UNK": "UNKNOWN",
    "ERROR": "ERROR",
}

#: Derived words sinfo prints (long and compact) that are not base states, with
#: the display state and the flags the word implies.
_DISPLAY_WORDS: dict[str, tuple[NodeState, frozenset[str]]] = {
    "DRAINED": (NodeState.DRAINED, frozenset({DRAIN})),
    "DRAIN": (NodeState.DRAINED, frozenset({DRAIN})),
    "DRAINING": (NodeState.DRAINING, frozenset({DRAIN})),
    "DRNG": (NodeState.DRAINING, frozenset({DRAIN})),
    "FAIL": (NodeState.FAIL, frozenset({FAIL})),
    "FAILING": (NodeState.FAILING, frozenset({FAIL})),
    "FAILG": (NodeState.FAILING, frozenset({FAIL})),
    "MAINT": (NodeState.MAINT, frozenset({MAINTENANCE})),
    "REBOOT": (NodeState.REBOOT, frozenset({REBOOT_REQUESTED})),
    "BOOT": (NodeState.REBOOT, frozenset({REBOOT_REQUESTED})),
    "REBOOT_ISSUED": (NodeState.REBOOT, frozenset({REBOOT_ISSUED})),
    "COMPLETING": (NodeState.COMPLETING, frozenset({COMPLETING})),
    "COMP": (NodeState.COMPLETING, frozenset({COMPLETING})),
    "RESERVED": (NodeState.RESERVED, frozenset({RESERVED})),
    "RESV": (NodeState.RESERVED, frozenset({RESERVED})),
    "PLANNED": (NodeState.IDLE, frozenset({PLANNED})),
    "PLND": (NodeState.IDLE, frozenset({PLANNED})),
    "PERFCTRS": (NodeState.IDLE, frozenset({"PERFCTRS"})),
    "NPC": (NodeState.IDLE, frozenset({"PERFCTRS"})),
    "BLOCKED": (NodeState.IDLE, frozenset({"BLOCKED"})),
    "INVAL": (NodeState.INVAL, frozenset({INVALID_REG})),
    "POWERED_DOWN": (NodeState.POWERED_DOWN, frozenset({POWERED_DOWN})),
    "POWERED_DN": (NodeState.POWERED_DOWN, frozenset({POWERED_DOWN})),
    "POWERING_DOWN": (NodeState.POWERED_DOWN, frozenset({POWERING_DOWN})),
    "POWRING_DN": (NodeState.POWERED_DOWN, frozenset({POWERING_DOWN})),
    "POWER_DOWN": (NodeState.POWERED_DOWN, frozenset({POWER_DOWN})),
    "POW_DN": (NodeState.POWERED_DOWN, frozenset({POWER_DOWN})),
    "POWERING_UP": (NodeState.UNKNOWN, frozenset({POWERING_UP})),
    "POWER_UP": (NodeState.UNKNOWN, frozenset({"POWER_UP"})),
    "POW_UP": (NodeState.UNKNOWN, frozenset({"POWER_UP"})),
    "CLOUD": (NodeState.UNKNOWN, frozenset({CLOUD})),
    "RESUME": (NodeState.UNKNOWN, frozenset({RESUME})),
    "RESM": (NodeState.UNKNOWN, frozenset({RESUME})),
    "CANCEL_REBOOT": (NodeState.UNKNOWN, frozenset({"REBOOT_CANCELED"})),
    "CANC_R": (NodeState.UNKNOWN, frozenset({"REBOOT_CANCELED"})),
}

# Flag spellings that differ between the REST API, scontrol and sinfo.
_FLAG_ALIASES: dict[str, str] = {
    "MAINT": MAINTENANCE,
    "NO_RESPOND": NOT_RESPONDING,
    "NOT_RESPONDING": NOT_RESPONDING,
    "REBOOT": REBOOT_REQUESTED,
    "DRAINED": DRAIN,
    "DRAINING": DRAIN,
    "RES": RESERVED,
}


def node_display_state(base: str, flags: Collection[str]) -> NodeState:
    """Derive the state sinfo shows from a base state and a flag set.

    Follows ``node_state_string()``: INVALID_REG, then MAINTENANCE (unless
    drained, busy or down), reboot flags (unless busy), DRAIN (DRAINING when
    ALLOCATED/MIXED/COMPLETING, else DRAINED), FAIL (FAILING when
    ALLOCATED/COMPLETING), then the base state; a COMPLETING idle node is
    COMPLETING.

    Args:
        base: a base state name, upper case (``IDLE``, ``MIXED``...).
        flags: flag names, upper case (``DRAIN``, ``NOT_RESPONDING``...).

    Returns:
        The display state.
    """
    if INVALID_REG in flags:
        return NodeState.INVAL
    busy = base in ("ALLOCATED", "MIXED")
    drain = DRAIN in flags
    if MAINTENANCE in flags and not (drain or busy or base == "DOWN"):
        return NodeState.MAINT
    if (REBOOT_REQUESTED in flags or REBOOT_ISSUED in flags) and not busy:
        return NodeState.REBOOT
    completing = COMPLETING in flags
    if drain:
        return NodeState.DRAINING if (completing or busy) else NodeState.DRAINED
    if FAIL in flags:
        return NodeState.FAILING if (completing or base == "ALLOCATED") else NodeState.FAIL
    if base == "UNKNOWN" and POWERED_DOWN in flags and set(flags) <= {POWERED_DOWN, CLOUD}:
        # node_state_string() prints "POWERED_DOWN" only for that flag on its own
        # (a powered-down cloud node with a known base state reads "IDLE~").
        return NodeState.POWERED_DOWN
    if base == "DOWN":
        return NodeState.DOWN
    if base == "ALLOCATED":
        return NodeState.ALLOCATED
    if completing:
        return NodeState.COMPLETING
    if base == "IDLE":
        if RESERVED in flags and not (_SUFFIX_FLAGS & set(flags)):
            return NodeState.RESERVED
        return NodeState.IDLE
    if base == "MIXED":
        return NodeState.MIXED
    if base == "FUTURE":
        return NodeState.FUTURE
    return NodeState.UNKNOWN


def parse_node_state(
    state: str | Sequence[str], flags: Iterable[str] = ()
) -> tuple[NodeState, frozenset[str]]:
    """Map any spelling of a node state to the display state and its flag set.

    Accepts the REST v0.0.38 pair (``"mixed"`` plus ``state_flags``
    ``["DRAIN"]``), REST v0.0.40+ arrays (``["IDLE", "DRAIN"]``), scontrol and
    ``sinfo -O StateComplete`` (``IDLE+DRAIN``, ``idle+drain``), and sinfo's
    long and compact words with their suffix (``drained``, ``drng``,
    ``idle*``, ``down*``, ``idle~``, ``alloc+``...).

    Args:
        state: the state string or array.
        flags: extra flag names given separately (REST ``state_flags``).

    Returns:
        ``(display_state, flags)``; flags use Slurm's upper-case names, e.g.
        ``NOT_RESPONDING`` for a ``*`` suffix, ``DRAIN`` for ``drained``.
        Unrecognised words give UNKNOWN (never raises).
    """
    flag_set = {_normalise_flag(flag) for flag in flags}
    if isinstance(state, str):
        word, implied = _split_state_text(state)
        flag_set |= implied
    else:
        word = ""
        for item in state:
            name = str(item).strip().upper()
            if not word and name in _BASE_WORDS:
                word = name
            else:
                flag_set.add(_normalise_flag(name))
    base = _BASE_WORDS.get(word)
    if base is not None:
        return node_display_state(base, flag_set), frozenset(flag_set)
    display = _DISPLAY_WORDS.get(word)
    if display is None:
        return NodeState.UNKNOWN, frozenset(flag_set)
    flag_set |= display[1]
    return display[0], frozenset(flag_set)


def _split_state_text(text: str) -> tuple[str, set[str]]:
    """Split ``idle*``, ``IDLE+DRAIN``, ``ALLOCATED+`` into a word and flags."""
    text = text.strip().upper()
    flags: set[str] = set()
    if "+" in text:
        head, *rest = text.split("+")
        for part in rest:
            if part:
                flags.add(_normalise_flag(part))
            else:
                # "ALLOCATED+" / "alloc+": allocated with completing jobs.
                flags.add(COMPLETING)
        text = head
    while text and text[-1] in NODE_STATE_SUFFIXES:
        flags.add(NODE_STATE_SUFFIXES[text[-1]])
        text = text[:-1]
    return text, flags


def _normalise_flag(name: str) -> str:
    flag = name.strip().upper()
    return _FLAG_ALIASES.get(flag, flag)
