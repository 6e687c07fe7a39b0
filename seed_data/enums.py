"""Python enums for the lookup tables, as they stand at Alembic head.

The lookup *rows* are owned by the migrations; these enums let app code say
``AccountType.SAVINGS`` instead of a bare string. ``tests/test_reference_data.py`` proves
that each enum's members are exactly its table's rows at head, so the two cannot drift.
"""

from enum import StrEnum


class AccountType(StrEnum):
    CURRENT_ACCOUNT = "current_account"
    SAVINGS = "savings"
    CASH_ISA = "cash_isa"
    CREDIT_CARD = "credit_card"
    MORTGAGE = "mortgage"
    PERSONAL_LOAN = "personal_loan"


class AccountStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    FROZEN = "frozen"
    CLOSED = "closed"


class ConversationChannel(StrEnum):
    WEB_CHAT = "web_chat"
    MOBILE_APP = "mobile_app"
    PHONE = "phone"
    EMAIL = "email"


class MessageRole(StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"
    SYSTEM = "system"


class TransactionCategory(StrEnum):
    GROCERIES = "groceries"
    EATING_OUT = "eating_out"
    TRANSPORT = "transport"
    BILLS = "bills"
    ENTERTAINMENT = "entertainment"
    SHOPPING = "shopping"
    SUBSCRIPTIONS = "subscriptions"
    HOLIDAYS = "holidays"
    HEALTH = "health"
    PERSONAL_CARE = "personal_care"
    HOME = "home"
    CASH = "cash"
    CHARITY = "charity"
    GIFTS = "gifts"
    TRANSFERS = "transfers"
    GENERAL = "general"


# Each lookup table and the enum that mirrors it.
LOOKUP_ENUMS: dict[str, type[StrEnum]] = {
    "account_types": AccountType,
    "account_statuses": AccountStatus,
    "conversation_channels": ConversationChannel,
    "message_roles": MessageRole,
    "transaction_categories": TransactionCategory,
}
