"""worker_service.crm.webhooks: Kommo's PHP-bracket form bodies become typed events."""

from __future__ import annotations

from worker_service.crm.webhooks import events_of, parse_form

WEBHOOK = ("account%5Bid%5D=29085955&account%5Bsubdomain%5D=example&leads%5Bstatus%5D%5B0%5D%5Bid%5D=10701093"
           "&leads%5Bstatus%5D%5B0%5D%5Bstatus_id%5D=142&leads%5Bstatus%5D%5B0%5D%5Bold_status_id%5D=20067736"
           "&leads%5Bstatus%5D%5B0%5D%5Bpipeline_id%5D=555&leads%5Bstatus%5D%5B0%5D%5Bprice%5D=22500"
           "&contacts%5Bupdate%5D%5B0%5D%5Bid%5D=77&contacts%5Bupdate%5D%5B0%5D%5Bname%5D=Ann")


def test_webhook_form_body_parses_into_typed_events():
    events = events_of(parse_form(WEBHOOK))
    assert [(e, a) for e, a, _ in events] == [("leads", "status"), ("contacts", "update")]
    lead = events[0][2]
    assert (lead.id, lead.status_id, lead.old_status_id, lead.pipeline_id, lead.price) == (10701093, 142, 20067736,
                                                                                          555, 22500)
