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
header form{margin-left:auto}main{padding:1em 1.2em;max-width:1400px}
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
{% if principal %}<header><strong>worker</strong>
<a href="/" class="{{ 'on' if nav == 'dlq' }}">Failed messages</a>
<a href="/audit" class="{{ 'on' if nav == 'audit' }}">Audit trail</a>
<a href="/events" class="{{ 'on' if nav == 'events' }}">Events</a>
<a href="/queues/">Live queues</a>
<form method="post" action="/logout"><input type="hidden" name="csrf" value="{{ csrf }}">
<span class="muted">{{ principal.name }} ({{ principal.role }})</span> <button>Log out</button></form></header>{% endif %}
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

ENV = Environment(loader=DictLoader({"base": BASE, "login": LOGIN, "list": LIST, "confirm": CONFIRM,
                                     "detail": DETAIL, "audit": AUDIT, "events": EVENTS}),
                  autoescape=select_autoescape(default=True, default_for_string=True))
