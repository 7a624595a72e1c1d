"""Server-rendered pages (Jinja2, autoescaped): no build step, no CDN, readable at 3 a.m."""

from __future__ import annotations

from jinja2 import DictLoader, Environment, select_autoescape

BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{% block title %}Worker{% endblock %} · worker dashboard</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
header{background:#1f2937;color:#fff;padding:.6em 1.2em;display:flex;gap:1.5em;align-items:center}
header a{color:#e5e7eb;text-decoration:none}header a.on{color:#fff;font-weight:600}
header form{margin-left:auto}header form.search{margin-left:1em}main{padding:1em 1.2em;max-width:1400px}
table{border-collapse:collapse;width:100%;background:#fff}th,td{border-bottom:1px solid #e5e7eb;padding:.35em .5em;
text-align:left;vertical-align:top}th{background:#f3f4f6;font-weight:600}
pre{background:#111827;color:#e5e7eb;padding:.8em;overflow:auto;white-space:pre-wrap;word-break:break-word}
.err{color:#b91c1c}.muted{color:#6b7280}.pill{display:inline-block;padding:0 .5em;border-radius:1em;background:#fee2e2;
color:#991b1b;font-size:12px}.ok{background:#dcfce7;color:#166534}.counts span{margin-right:1em}
button{padding:.3em .8em;cursor:pointer}button.danger{background:#b91c1c;color:#fff;border:0}
form.filters{display:flex;gap:.6em;flex-wrap:wrap;align-items:end;margin-bottom:1em}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#374151}
.flash{background:#ecfdf5;border:1px solid #a7f3d0;padding:.5em .8em;margin-bottom:1em}
</style></head><body>
{% include "nav" %}
<main>{% if flash %}<div class="flash" id="flash">{{ flash }}</div>{% endif %}{% block body %}{% endblock %}</main>
</body></html>"""

LOGIN = """{% extends "base" %}{% block title %}Log in{% endblock %}{% block body %}
<h1>Worker dashboard</h1>{% if error %}<p class="err" id="login-error">{{ error }}</p>{% endif %}
<form method="post" action="/login"><p><label>User <input name="user" value="{{ user }}" autocomplete="username"></label></p>
<p><label>Password <input name="password" type="password" autocomplete="current-password"></label></p>
<input type="hidden" name="next" value="{{ next }}"><button id="login">Log in</button></form>{% endblock %}"""

LIST = """{% extends "base" %}{% block title %}Failed messages{% endblock %}{% block body %}
<h1>Failed messages <span class="muted">({{ total }} {{ flt.state or "any state" }})</span></h1>
<div class="counts">{% for k, n in by_type.items() %}<span><span class="pill">{{ k }}</span> {{ n }}</span>{% endfor %}</div>
<form class="filters" method="get" action="/">
<label>Actor<select name="actor"><option value="">any</option>{% for a in actors %}
<option {{ 'selected' if a == flt.actor }}>{{ a }}</option>{% endfor %}</select></label>
<label>Queue<select name="queue"><option value="">any</option>{% for q in queues %}
<option {{ 'selected' if q == flt.queue }}>{{ q }}</option>{% endfor %}</select></label>
<label>Error type<select name="error_type"><option value="">any</option>{% for t in error_types %}
<option {{ 'selected' if t == flt.error_type }}>{{ t }}</option>{% endfor %}</select></label>
<label>State<select name="state">{% for s in ["dead", "requeued", "deleted", ""] %}
<option value="{{ s }}" {{ 'selected' if s == (flt.state or '') }}>{{ s or "any" }}</option>{% endfor %}</select></label>
<label>Failed since<input type="date" name="since" value="{{ since }}"></label>
<label>until<input type="date" name="until" value="{{ until }}"></label><button id="filter">Filter</button></form>
<form method="post" action="/dead-letters/bulk" id="bulk"><input type="hidden" name="csrf" value="{{ csrf }}">
{% for k, v in query_items %}<input type="hidden" name="f_{{ k }}" value="{{ v }}">{% endfor %}
<table><thead><tr><th><input type="checkbox" onclick="for(const c of document.querySelectorAll('input[name=ids]'))c.checked=this.checked"></th>
<th>#</th><th>failed at (UTC)</th><th>actor</th><th>queue</th><th>error type</th><th>final error</th><th>attempts</th><th>state</th></tr></thead><tbody>
{% for r in rows %}<tr><td><input type="checkbox" name="ids" value="{{ r.id }}"></td><td><a href="/dead-letters/{{ r.id }}">{{ r.id }}</a></td>
<td>{{ r.failed_at }}</td><td>{{ r.actor or "—" }}</td><td>{{ r.queue }}</td><td><span class="pill">{{ r.error_type }}</span></td>
<td class="err">{{ (r.error_message or "")[:160] }}</td><td>{{ r.attempts }}</td><td>{{ r.state }}</td></tr>
{% else %}<tr><td colspan="9" class="muted">No failed messages match.</td></tr>{% endfor %}</tbody></table>
<p>{% if page > 1 %}<a href="?{{ qs }}&page={{ page - 1 }}">← newer</a>{% endif %} page {{ page }}
{% if more %}<a href="?{{ qs }}&page={{ page + 1 }}" id="older">older →</a>{% endif %}</p>
<p><button name="action" value="requeue" id="requeue-selected">Requeue selected</button>
<button name="action" value="delete" class="danger" id="delete-selected">Delete selected</button>
&nbsp; <button name="action" value="requeue-all" id="requeue-all">Requeue all {{ total }} matching…</button>
<button name="action" value="delete-all" class="danger" id="delete-all">Delete all {{ total }} matching…</button></p>
</form>{% endblock %}"""

CONFIRM = """{% extends "base" %}{% block title %}Confirm{% endblock %}{% block body %}
<h1>{{ verb|capitalize }} {{ count }} dead letter{{ 's' if count != 1 }}?</h1>
<p>Filter: <code>{{ description }}</code></p>
<form method="post" action="/dead-letters/bulk"><input type="hidden" name="csrf" value="{{ csrf }}">
{% for k, v in query_items %}<input type="hidden" name="f_{{ k }}" value="{{ v }}">{% endfor %}
<input type="hidden" name="confirm" value="yes"><button name="action" value="{{ action }}" class="danger" id="confirm">
Yes, {{ verb }} {{ count }}</button> <a href="/?{{ qs }}">Cancel</a></form>{% endblock %}"""

DETAIL = """{% extends "base" %}{% block title %}Dead letter {{ r.id }}{% endblock %}{% block body %}
<p><a href="/">← failed messages</a></p>
<h1>Dead letter #{{ r.id }} <span class="pill {{ 'ok' if r.state != 'dead' }}">{{ r.state }}</span></h1>
<table><tbody>
<tr><th>message id</th><td>{{ r.message_id or "—" }}</td></tr><tr><th>actor / queue</th><td>{{ r.actor or "—" }} / {{ r.queue }}</td></tr>
<tr><th>error type</th><td><span class="pill">{{ r.error_type }}</span> {{ r.exception_type or "" }}</td></tr>
<tr><th>final error</th><td class="err" id="final-error">{{ r.error_message }}</td></tr>
<tr><th>attempts</th><td>{{ r.attempts }}</td></tr><tr><th>first enqueued</th><td>{{ r.first_enqueued_at }}</td></tr>
<tr><th>failed at</th><td>{{ r.failed_at }}</td></tr>
<tr><th>state changed</th><td>{{ r.state_changed_at or "—" }} {{ r.state_changed_by or "" }}</td></tr></tbody></table>
<h2>Payload <span class="muted">(secrets masked)</span></h2><pre id="payload">{{ payload }}</pre>
{% if r.raw_body %}<h2>Raw body</h2><pre>{{ r.raw_body[:20000] }}</pre>{% endif %}
<h2>Attempt history</h2>{% if r.history %}<table><tr><th>attempt</th><th>at (UTC)</th><th>error</th></tr>
{% for h in r.history %}<tr><td>{{ h.attempt }}</td><td>{{ h.at_iso }}</td><td class="err">{{ h.error }}</td></tr>{% endfor %}
</table>{% else %}<p class="muted">No earlier attempts.</p>{% endif %}
<h2>Traceback of the final attempt</h2><pre id="traceback">{{ r.traceback or "—" }}</pre>
{% if r.state == "dead" %}<form method="post" action="/dead-letters/{{ r.id }}/requeue" style="display:inline">
<input type="hidden" name="csrf" value="{{ csrf }}"><button id="requeue">Requeue</button></form>
<form method="post" action="/dead-letters/{{ r.id }}/delete" style="display:inline">
<input type="hidden" name="csrf" value="{{ csrf }}"><button class="danger" id="delete">Delete</button></form>{% endif %}
{% endblock %}"""

AUDIT = """{% extends "base" %}{% block title %}Audit trail{% endblock %}{% block body %}
<h1>Audit trail</h1><table><thead><tr><th>at (UTC)</th><th>who</th><th>action</th><th>count</th><th>target</th></tr></thead>
<tbody>{% for a in rows %}<tr><td>{{ a.at }}</td><td>{{ a.who }}</td><td>{{ a.action }}</td><td>{{ a.count }}</td>
<td><code>{{ a.target }}</code></td></tr>{% else %}<tr><td colspan="5" class="muted">Nothing yet.</td></tr>{% endfor %}
</tbody></table>{% endblock %}"""

EVENTS = """{% extends "base" %}{% block title %}Outcome events{% endblock %}{% block body %}
<h1>Outcome events <span class="muted">({{ pending }} waiting{% if pending %}, the oldest for {{ lag }} s{% endif %})
</span></h1>{% if not configured %}<p class="muted">EVENTS_WEBHOOK_URL is not set: no events are recorded.</p>{% endif %}
<p><a href="/events">all</a> · <a href="/events?state=pending">waiting</a> · <a href="/events?state=delivered">delivered</a></p>
<table><thead><tr><th>#</th><th>occurred (UTC)</th><th>event</th><th>asset</th><th>error code</th><th>state</th>
<th>attempts</th><th>last error</th><th></th></tr></thead><tbody>
{% for e in rows %}<tr><td>{{ e.id }}</td><td>{{ e.occurred_at }}</td><td>{{ e.event }}</td><td>{{ e.asset_id }}</td>
<td>{{ e.error_code or "" }}</td><td><span class="pill {{ 'ok' if e.state == 'delivered' }}">{{ e.state }}</span>
{% if e.next_attempt_at and e.state == 'pending' %}<span class="muted">next {{ e.next_attempt_at }}</span>{% endif %}</td>
<td>{{ e.attempts }}</td><td class="err">{{ (e.last_error or "")[:200] }}</td>
<td><form method="post" action="/events/{{ e.id }}/resend"><input type="hidden" name="csrf" value="{{ csrf }}">
<button id="resend-{{ e.id }}">Send again</button></form></td></tr>
{% else %}<tr><td colspan="9" class="muted">No events.</td></tr>{% endfor %}</tbody></table>{% endblock %}"""

OVERVIEW_BODY = """<div id="overview"><p class="muted">{{ o.at }} · refreshes every 5 s</p>
<div style="display:flex;gap:1em;flex-wrap:wrap">{{ chart_hour|safe }}{{ chart_day|safe }}</div>
<h2>Queues</h2><table id="queues"><thead><tr><th>queue</th><th>waiting</th><th>delayed</th><th>in flight</th>
<th>oldest waiting</th><th>state</th><th></th></tr></thead><tbody>
{% for q in o.queues %}<tr><td>{{ q.name }}</td><td>{{ q.depth }}</td><td>{{ q.delayed }}</td><td>{{ q.in_flight }}</td>
<td>{{ q.oldest_age_seconds }} s</td><td>{% if q.paused %}<span class="pill">paused</span>{% else %}
<span class="pill ok">running</span>{% endif %}</td><td>{% if can_change %}
<form method="post" action="/overview/queues/{{ q.name }}/{{ 'resume' if q.paused else 'pause' }}">
<input type="hidden" name="csrf" value="{{ csrf }}"><button id="{{ 'resume' if q.paused else 'pause' }}-{{ q.name }}">
{{ 'Resume' if q.paused else 'Pause' }}</button></form> <a href="/overview/queues/{{ q.name }}/purge"
id="purge-{{ q.name }}">Purge…</a>{% endif %}</td></tr>{% endfor %}</tbody></table>
<h2>Worker processes</h2><table id="workers"><thead><tr><th>host</th><th>pid</th><th>queues</th><th>busy / threads</th>
<th>running now</th><th>heartbeat</th><th>RSS</th></tr></thead><tbody>
{% for w in o.workers %}<tr><td>{{ w.host }}</td><td>{{ w.pid }}</td><td>{{ w.queues|join(", ") }}</td>
<td>{{ w.busy }} / {{ w.threads }}</td><td>{% for c in w.current %}{{ c.actor }} ({{ c.seconds }} s){{ ", " if not loop.last }}
{% endfor %}</td><td>{{ w.heartbeat_age_seconds }} s ago</td><td>{{ (w.rss_bytes or 0) // 1048576 }} MB</td></tr>
{% else %}<tr><td colspan="7" class="err">No worker process has reported: nothing is consuming.</td></tr>{% endfor %}
</tbody></table>
<h2>Upstreams</h2><table><thead><tr><th>upstream</th><th>paused</th><th>rate limit</th><th>spend today</th></tr></thead>
<tbody>{% for name, u in o.upstreams.items() %}<tr><td>{{ name }}</td><td>{% if u.paused_for_seconds %}
<span class="pill">{{ u.paused_for_seconds }} s</span> {{ u.pause_reason }}{% else %}no{% endif %}</td>
<td>{{ u.rate_limit_rps }} req/s</td><td>{% if u.spend_today_usd is defined %}${{ u.spend_today_usd }}
{% if u.daily_budget_usd %} of ${{ u.daily_budget_usd }}{% endif %}{% endif %}</td></tr>{% endfor %}</tbody></table>
<h2>Dead letters in the last hour</h2><p class="counts">{% for t, n in o.dead_letters_last_hour.items() %}
<span><span class="pill">{{ t }}</span> {{ n }}</span>{% else %}None.{% endfor %}</p>
<p>Outcome events waiting: {{ o.events.pending }}{% if o.events.pending %} (oldest {{ o.events.oldest_pending_seconds }} s)
{% endif %}</p></div>"""

OVERVIEW = """{% extends "base" %}{% block title %}Overview{% endblock %}{% block body %}<h1>Overview</h1>
{% include "overview_body" %}
<script>setInterval(async () => {const r = await fetch("/overview?partial=1", {credentials: "same-origin"});
if (r.ok) document.getElementById("overview").outerHTML = await r.text();}, 5000);</script>{% endblock %}"""

ASSET = """{% extends "base" %}{% block title %}Asset {{ a.asset_id }}{% endblock %}{% block body %}
<h1>Asset {{ a.asset_id }} <span class="pill {{ 'ok' if a.status == 'extracted' }}">{{ a.status }}</span>
<span class="pill {{ 'ok' if a.knowledge_status == 'done' }}">knowledge {{ a.knowledge_status or "—" }}</span></h1>
<table id="record"><tbody>
{% for k in ["source", "filename", "detected_type", "pages", "chars", "size", "attempts", "error_code", "error_message",
"knowledge_error_code", "knowledge_chunks", "knowledge_chunks_failed", "crm_lead_id", "created_at", "updated_at"] %}
<tr><th>{{ k }}</th><td>{{ a[k] if a[k] is not none else "—" }}</td></tr>{% endfor %}</tbody></table>
<h2>History</h2><table id="history"><thead><tr><th>at (UTC)</th><th>track</th><th>status</th><th>attempt</th>
<th>error</th></tr></thead><tbody>{% for h in history %}<tr><td>{{ h.at }}</td><td>{{ h.track }}</td>
<td>{{ h.status }}</td><td>{{ h.attempt or "" }}</td><td class="err">{{ h.error_code or "" }}</td></tr>
{% else %}<tr><td colspan="5" class="muted">No transition recorded.</td></tr>{% endfor %}</tbody></table>
<h2>Dead letters</h2>{% if dead %}<table><tbody>{% for d in dead %}<tr><td><a href="/dead-letters/{{ d.id }}">#{{ d.id }}</a>
</td><td>{{ d.actor }}</td><td><span class="pill">{{ d.error_type }}</span></td><td class="err">{{ (d.error_message or "")[:160] }}
</td><td>{{ d.state }}</td></tr>{% endfor %}</tbody></table>{% else %}<p class="muted">None.</p>{% endif %}
<h2>Text</h2>{% if text %}<p><a href="/assets/{{ a.asset_id }}/text" id="download">Download ({{ text.text|length }}
characters)</a></p><pre id="text">{{ text.text[:3000] }}{% if text.text|length > 3000 %}…{% endif %}</pre>
{% else %}<p class="muted">No text.</p>{% endif %}
<h2>Knowledge graph</h2>{% if graph and graph.entities %}<div style="display:flex;gap:1em;flex-wrap:wrap">
{{ picture|safe }}<table><thead><tr><th>entity</th><th>type</th><th>mentions</th></tr></thead><tbody>
{% for e in graph.entities[:30] %}<tr><td>{{ e.name }}</td><td>{{ e.type }}</td><td>{{ e.mentions }}</td></tr>
{% endfor %}</tbody></table><table><thead><tr><th>source</th><th>relation</th><th>target</th><th>weight</th></tr></thead>
<tbody>{% for r in graph.relations[:30] %}<tr><td>{{ r.source }}</td><td>{{ r.type }}</td><td>{{ r.target }}</td>
<td>{{ r.weight }}</td></tr>{% endfor %}</tbody></table></div>{% else %}<p class="muted">No graph.</p>{% endif %}
<h2>CRM</h2>{% if lead %}<p>Kommo lead {{ lead.kommo_id }}: status {{ lead.status_id or "—" }}, price {{ lead.price or "—" }}</p>
{% elif a.crm_lead_id %}<p>Kommo lead {{ a.crm_lead_id }} (no webhook seen yet)</p>{% else %}<p class="muted">No CRM lead.</p>
{% endif %}{% endblock %}"""

PURGE = """{% extends "base" %}{% block title %}Purge {{ queue }}{% endblock %}{% block body %}
<h1>Purge queue {{ queue }}: {{ count }} message{{ 's' if count != 1 }} will be deleted</h1>
<p>What waits in the queue and its delay queue is deleted for good (messages that workers are running are
not touched).  The assets they were for end <code>failed</code> / <code>purged</code>.</p>
<form method="post" action="/overview/queues/{{ queue }}/purge"><input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="confirm" value="{{ count }}"><button class="danger" id="confirm-purge">Yes, delete {{ count }}
</button> <a href="/overview">Cancel</a></form>{% endblock %}"""

NAV = """<style>header{font:14px/1.45 system-ui,sans-serif;background:#1f2937;color:#fff;padding:.6em 1.2em;
display:flex;gap:1.5em;align-items:center}header a{color:#e5e7eb;text-decoration:none}
header a.on{color:#fff;font-weight:600}header form{margin-left:auto}header form.search{margin-left:1em}</style>
{% if principal %}<header><strong>worker</strong>
<a href="/overview" class="{{ 'on' if nav == 'overview' }}">Overview</a>
<a href="/" class="{{ 'on' if nav == 'dlq' }}">Failed messages</a>
<a href="/audit" class="{{ 'on' if nav == 'audit' }}">Audit trail</a>
<a href="/events" class="{{ 'on' if nav == 'events' }}">Events</a>
<a href="/queues/" class="{{ 'on' if nav == 'queues' }}">Live queues</a>
<form method="get" action="/assets" class="search"><input name="id" placeholder="asset id" aria-label="asset id"
size="16"></form>
<form method="post" action="/logout"><input type="hidden" name="csrf" value="{{ csrf }}">
<span class="muted">{{ principal.name }} ({{ principal.role }})</span> <button>Log out</button></form></header>{% endif %}"""

ENV = Environment(loader=DictLoader({"base": BASE, "login": LOGIN, "list": LIST, "confirm": CONFIRM,
                                     "detail": DETAIL, "audit": AUDIT, "events": EVENTS,
                                     "overview": OVERVIEW, "overview_body": OVERVIEW_BODY, "asset": ASSET,
                                     "purge": PURGE, "nav": NAV}),
                  autoescape=select_autoescape(default=True, default_for_string=True))
