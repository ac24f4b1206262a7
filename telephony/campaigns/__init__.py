"""Outbound follow-up campaigns, one module per job (models, contacts, schedule, dialers, runner):
patients imported from CSV, call windows in the campaign's local
time, retries with backoff up to a maximum of attempts, and due work claimed from the database so
that any number of dialler workers never call the same patient twice (PostgreSQL:
`SELECT ... FOR UPDATE SKIP LOCKED`; SQLite: one atomic `UPDATE ... RETURNING`).

Tables come from the records migrations (revision 0002_campaigns); phone numbers live in the
database only, never in logs.
"""

from telephony.campaigns.contacts import E164, ImportReport, create_campaign, import_csv, normalise_phone
from telephony.campaigns.dialers import (
    CarrierDialer,
    Dialer,
    DialOutcome,
    SipDialer,
    apply_carrier_status,
    carrier_outcome,
)
from telephony.campaigns.models import DONE_OUTCOMES, RETRY_OUTCOMES, Attempt, Campaign, Contact, utcnow
from telephony.campaigns.runner import CampaignRunner, campaign_summary
from telephony.campaigns.schedule import (
    claim_due,
    finish_attempt,
    in_window,
    next_allowed,
    retry_at,
    start_attempt,
)

__all__ = [
    "DONE_OUTCOMES", "E164", "RETRY_OUTCOMES", "Attempt", "Campaign", "CampaignRunner", "CarrierDialer", "Contact",
    "DialOutcome", "Dialer", "ImportReport", "SipDialer", "apply_carrier_status", "campaign_summary",
    "carrier_outcome", "claim_due", "create_campaign", "finish_attempt", "import_csv", "in_window",
    "next_allowed", "normalise_phone", "retry_at", "start_attempt", "utcnow",
]
