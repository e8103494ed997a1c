"""Whose mailbox a notification goes to, and the rule that it is always the owner's.

A user's own address comes, in this order, from a claim of their verified token (when the
operator names one), from the operator's domain template (``{user}@example.edu``), or from
nowhere (``None``): then only an admin can give a rule an explicit address.

The syntax accepted is deliberately narrower than RFC 5322: one ``addr-spec`` made of a
dot-atom local part and a DNS host name, no quoting, no comments, no display name, no
whitespace or control character. Anything wider could smuggle a second recipient or a header
(CR/LF) into the SMTP envelope or the message, and no site hands out such addresses.
"""

from __future__ import annotations

import re

from slurmcast.core.channels import is_valid_user_name
from slurmcast.core.notify.errors import ForbiddenDestination, InvalidAddress

#: RFC 5321's limits: the whole path, the local part, the domain and each label.
MAX_ADDRESS_LENGTH = 254
MAX_LOCAL_LENGTH = 64
MAX_DOMAIN_LENGTH = 253
MAX_LABEL_LENGTH = 63
#: The marker a domain template must hold exactly once.
USER_PLACEHOLDER = "{user}"
#: A rule's target meaning "the owner's own address, whatever it is when the mail is sent".
DEFAULT_TARGET = "default"

# Dot-atom text (RFC 5322 atext) without the characters that mean something to a shell, a
# header or a mailing list manager: no quotes, backslashes, spaces, commas, angle brackets.
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")


def validate_address(value: object, *, field: str = "address") -> str:
    """Check an e-mail address's syntax and return it.

    Raises:
        InvalidAddress: not a string, too long, not exactly one ``@``, a control character,
            or a local part or domain outside the accepted syntax.
    """
    if not isinstance(value, str):
        raise InvalidAddress(f"{field} must be a string", field=field)
    if not value or len(value) > MAX_ADDRESS_LENGTH:
        raise InvalidAddress(f"{field} must be 1 to {MAX_ADDRESS_LENGTH} characters", field=field)
    if not value.isascii() or not value.isprintable():
        # CR and LF above all: they would end the header or SMTP command holding it.
        raise InvalidAddress(f"{field} has a control or non-ASCII character", field=field)
    if value.count("@") != 1:
        raise InvalidAddress(f"{field} must contain exactly one '@'", field=field)
    local, domain = value.split("@")
    if len(local) > MAX_LOCAL_LENGTH or _LOCAL.fullmatch(local) is None:
        raise InvalidAddress(f"{field} has an invalid local part", field=field)
    if not is_valid_domain(domain):
        raise InvalidAddress(f"{field} has an invalid domain", field=field)
    return value


def is_valid_domain(domain: str) -> bool:
    """A DNS host name with at least two labels (``example.edu``, not ``localhost``)."""
    if not domain or len(domain) > MAX_DOMAIN_LENGTH:
        return False
    labels = domain.split(".")
    return len(labels) >= 2 and all(
        len(label) <= MAX_LABEL_LENGTH and _LABEL.fullmatch(label) is not None for label in labels
    )


def same_address(a: str, b: str) -> bool:
    """Whether two valid addresses name the same mailbox.

    Domains compare without case (DNS); local parts exactly, as RFC 5321 leaves their case
    to the receiving site: treating ``Alice`` and ``alice`` as one could hand a user
    someone else's mailbox at a site that distinguishes them.
    """
    local_a, _, domain_a = a.partition("@")
    local_b, _, domain_b = b.partition("@")
    return local_a == local_b and domain_a.lower() == domain_b.lower()


def validate_template(template: object) -> str:
    """Check an operator's domain template such as ``{user}@example.edu``.

    Raises:
        InvalidAddress: not exactly one ``{user}``, another brace, or an address that would
            not be valid for a plain user name.
    """
    if not isinstance(template, str):
        raise InvalidAddress("the address template must be a string", field="template")
    if template.count(USER_PLACEHOLDER) != 1:
        raise InvalidAddress(
            f"the address template must contain {USER_PLACEHOLDER} exactly once",
            field="template",
        )
    if "{" in template.replace(USER_PLACEHOLDER, "") or "}" in template.replace(
        USER_PLACEHOLDER, ""
    ):
        raise InvalidAddress(
            f"the address template may hold no brace but {USER_PLACEHOLDER}", field="template"
        )
    # A template is only useful if an ordinary name gives a valid address.
    validate_address(template.replace(USER_PLACEHOLDER, "user"), field="template")
    return template


def address_from_template(template: str, user: str) -> str:
    """The address a template gives a user.

    Raises:
        InvalidAddress: the template is invalid, the user name is not a valid Slurm user name,
            or the result is not a valid address (a name starting with a dot, say).
    """
    validate_template(template)
    if not is_valid_user_name(user):
        raise InvalidAddress("not a valid user name", field="user")
    return validate_address(template.replace(USER_PLACEHOLDER, user), field="user")


def own_address(user: str, *, claim: object = None, template: str | None = None) -> str | None:
    """A user's own e-mail address: the token's claim, else the template's, else None.

    ``claim`` is the value of the operator-named claim of the user's verified token (absent:
    None). A claim that is not a valid address is not trusted and falls through to the
    template, so a malformed identity provider entry cannot open the way to arbitrary text.
    """
    if claim is not None:
        try:
            return validate_address(claim, field="claim")
        except InvalidAddress:
            pass
    if template is not None:
        try:
            return address_from_template(template, user)
        except InvalidAddress:
            return None
    return None


def check_email_target(target: object, *, own: str | None, is_admin: bool) -> str:
    """Validate an e-mail rule's target and return it (``default`` or an address).

    A non-admin's explicit address must be their own: nobody can make the server mail a
    third party (spam, or a phishing relay with the site's name on it). Admins may name any
    address (a team list, an on-call alias).

    Raises:
        InvalidAddress: malformed, or ``default`` when no address is known for the user.
        ForbiddenDestination: a non-admin's address that is not their own.
    """
    if target == DEFAULT_TARGET:
        if own is None:
            raise InvalidAddress(
                "no e-mail address is known for you: ask the operator", field="target"
            )
        return DEFAULT_TARGET
    address = validate_address(target, field="target")
    if is_admin:
        return address
    if own is None or not same_address(address, own):
        raise ForbiddenDestination("a rule may only send e-mail to your own address")
    return address


def recipient(target: str, own: str | None) -> str | None:
    """The address to send to now: the rule's own, or for ``default`` the owner's current
    one (None when the owner has none any more: the delivery is dead-lettered, not guessed)."""
    if target == DEFAULT_TARGET:
        return own
    return target
