"""worker_service.crm.webhooks: Kommo's PHP-bracket form bodies become typed events."""

from __future__ import annotations

from worker_service.crm.webhooks import events_of, parse_form

WEBHOOK = (
    "account%5Bid%5D=29085955&account%5Bsubdomain%5D=example&leads%5Bstatus%5D%5B0%5D%5Bid%5D=10701093"
    "&leads%5Bstatus%5D%5B0%5D%5Bstatus_id%5D=142&leads%5Bstatus%5D%5B0%5D%5Bold_status_id%5D=20067736"
    "&leads%5Bstatus%5D%5B0%5D%5Bpipeline_id%5D=555&leads%5Bstatus%5D%5B0%5D%5Bprice%5D=22500"
    "&contacts%5Bupdate%5D%5B0%5D%5Bid%5D=77&contacts%5Bupdate%5D%5B0%5D%5Bname%5D=Ann"
)


def test_webhook_form_body_parses_into_typed_events():
    events = events_of(parse_form(WEBHOOK))
    assert [(e, a) for e, a, _ in events] == [("leads", "status"), ("contacts", "update")]
    lead = events[0][2]
    assert (lead.id, lead.status_id, lead.old_status_id, lead.pipeline_id, lead.price) == (
        10701093,
        142,
        20067736,
        555,
        22500,
    )


def test_out_of_range_numbers_are_unknown_and_never_fail_the_webhook(tmp_path):
    """Regression (second probe): ``price=1e300`` failed the whole genuine webhook (its events lost to retries and a
    dead letter); ``1e400`` raised OverflowError; a 30-digit id overflowed the ledger's BIGINT."""
    from worker_service.crm.webhooks import store_and_dispatch
    from worker_service.database import CrmLink, init_database, migrate, session

    init_database(f"sqlite:///{tmp_path}/crm.db")
    migrate()
    body = (
        "leads%5Bstatus%5D%5B0%5D%5Bid%5D=1001&leads%5Bstatus%5D%5B0%5D%5Bstatus_id%5D=142"
        "&leads%5Bstatus%5D%5B0%5D%5Bprice%5D=1e300&leads%5Bstatus%5D%5B0%5D%5Bupdated_at%5D=1e400"
        "&leads%5Bstatus%5D%5B1%5D%5Bid%5D=123456789012345678901234567890"
        "&leads%5Bstatus%5D%5B1%5D%5Bstatus_id%5D=143&account%5Bid%5D=-1e999"
    )
    stored = store_and_dispatch(body)
    assert [(e.entity, e.kommo_id) for e in stored] == [
        ("leads", 1001)
    ]  # the item with a bad id is skipped alone
    with session():
        lead = CrmLink.get(CrmLink.kommo_id == 1001)
    assert (lead.status_id, lead.price, lead.status_changed_at) == (142, None, None)
