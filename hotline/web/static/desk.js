'use strict';
// The operator desk: presence as Asterisk reports it, the screen-pop, call control.
const $ = id => document.getElementById(id);
const esc = s => String(s ?? '').replace(/[&<>"']/g,
  c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
const clock = iso => iso ? new Date(iso).toLocaleString('uk-UA', {hour12: false}) : '';
const STATE_TEXT = {ringing: 'ringing', in_call: 'in call', ended: 'ended'};
let pop = null;          // the card shown
let popVersion = 0;      // messages older than the card shown are ignored
let refreshTimer = null;

function say(text, ok) {
  const m = $('message');
  m.textContent = text;
  m.className = ok ? 'ok' : 'error';
}

async function getJson(url) {
  const r = await fetch(url, {credentials: 'same-origin'});
  if (r.status === 401) { location.href = '/login'; throw new Error('signed out'); }
  const data = await r.json();
  if (!r.ok) throw new Error(data.message || r.statusText);
  return data;
}

const csrf = () => document.querySelector('input[name="csrf"]').value;

async function post(url, body) {
  const r = await fetch(url, {
    method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf()},
    body: JSON.stringify(body)});
  if (r.status === 401) { location.href = '/login'; throw new Error('signed out'); }
  const data = await r.json();
  if (!r.ok) throw new Error(data.message || r.statusText);
  return data;
}

function renderMembers(members) {
  const body = document.querySelector('#members tbody');
  if (!members) { body.innerHTML = '<tr><td colspan="5" class="muted">unknown</td></tr>'; return; }
  body.innerHTML = members.length ? members.map(m =>
    `<tr data-queue="${esc(m.queue)}" data-paused="${m.paused ? '1' : '0'}">
     <td>${esc(m.queue)}</td><td class="status">${esc(m.status)}</td>
     <td>${m.paused ? 'yes' : 'no'}</td><td class="reason">${esc(m.reason)}</td>
     <td>${esc(m.calls_taken)}</td></tr>`).join('')
    : '<tr class="logged-out"><td colspan="5" class="muted">not logged in to any queue</td></tr>';
}

async function refreshState() {
  const data = await getJson('/api/desk/state');
  $('interface').textContent = data.operator.interface;
  renderMembers(data.members);
  const t = $('telephony');
  t.hidden = !data.telephony;
  t.textContent = data.telephony || '';
  const reasons = $('pause-reason');
  if (!reasons.options.length) {
    reasons.innerHTML = data.pause_reasons.map(
      r => `<option value="${esc(r.code)}">${esc(r.label)}</option>`).join('');
    $('transfer-queue').innerHTML = data.queues.map(
      q => `<option value="${esc(q.queue)}">${esc(q.label)}</option>`).join('');
  }
  if (data.pop) showPop(data.pop);
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => refreshState().catch(e => say(e.message, false)), 150);
}

function showPop(p) {
  if (p.version && p.version < popVersion) return;
  popVersion = p.version || popVersion;
  const sameCall = pop && pop.uniqueid === p.uniqueid;
  pop = p;
  $('pop').hidden = false;
  $('pop').dataset.uniqueid = p.uniqueid;
  $('pop').dataset.state = p.state;
  const state = $('pop-state');
  state.textContent = STATE_TEXT[p.state] || p.state;
  state.className = 'state ' + p.state;
  $('pop-number').textContent = p.caller_number;
  $('pop-name').textContent = p.caller_name;
  const c = p.citizen;
  $('pop-citizen').textContent = c
    ? [c.name || '(no name)', c.phone, c.district_name || ''].filter(Boolean).join(' · ')
    : (p.context_error ? p.context_error : 'new citizen');
  $('pop-language').textContent = p.language || '—';
  $('pop-ivr').textContent = [p.ivr_choice ? 'pressed ' + p.ivr_choice : 'no choice',
                              p.ivr_source || ''].filter(Boolean).join(' · ');
  $('pop-queue').textContent = [p.queue_label, (p.queue_path || []).join(' → ')]
    .filter(Boolean).join(' · ');
  $('pop-waited').textContent = p.waited_seconds === null || p.waited_seconds === undefined
    ? '—' : p.waited_seconds + ' s';
  // what the IVR told this caller before the menu (water off, road closed…)
  const notices = p.notices || [];
  $('pop-notices').hidden = !notices.length;
  $('pop-notices').innerHTML = notices.map(n => `<li class="${esc(n.kind)}" data-id="${esc(n.id)}">
     <strong>${esc(n.kind)}</strong> ${esc(n.text)} <span class="muted">until ${esc(clock(n.ends_at))}</span></li>`).join('');
  document.querySelector('#pop-appeals tbody').innerHTML = (p.appeals || []).length
    ? p.appeals.map(a => `<tr class="${a.open ? 'open' : ''}" data-number="${esc(a.number)}">
       <td>${esc(a.number)}</td><td>${esc(a.status)}</td><td>${esc(a.category)}</td>
       <td>${esc(a.executor)}</td><td>${esc(clock(a.created_at))}</td></tr>`).join('')
    : '<tr><td colspan="5" class="muted">no appeals</td></tr>';
  document.querySelector('#pop-calls tbody').innerHTML = (p.recent_calls || []).length
    ? p.recent_calls.map(r => `<tr><td>${esc(clock(r.started_at))}</td><td>${esc(r.queue)}</td>
       <td>${esc(r.outcome)}</td><td>${esc(r.operator_name)}</td></tr>`).join('')
    : '<tr><td colspan="4" class="muted">no calls before</td></tr>';
  if (!$('callback-number').value || !sameCall) $('callback-number').value = p.caller_number;
  const up = p.state === 'in_call' || p.state === 'ended';
  const panel = $('call-panel');
  $('in-call').hidden = !up;
  const src = '/desk/call/' + encodeURIComponent(p.uniqueid);
  if (up && panel.getAttribute('src') !== src) panel.setAttribute('src', src);
  for (const id of ['btn-hangup', 'btn-transfer-queue', 'btn-transfer-operator']) {
    $(id).disabled = p.state !== 'in_call';
  }
}

function endPop(msg) {
  if (!pop || pop.uniqueid !== msg.uniqueid) return;
  popVersion = msg.version || popVersion;
  pop = null;
  $('pop').hidden = true;
  $('in-call').hidden = true;
  $('call-panel').setAttribute('src', 'about:blank');
}

async function act(url, body, button) {
  if (button) button.disabled = true;
  try {
    const r = await post(url, body);
    say(r.message || 'done', true);
  } catch (e) {
    say(e.message, false);
  } finally {
    if (button) button.disabled = false;
    scheduleRefresh();
  }
}

function wire() {
  const presence = (action, extra) => ev =>
    act('/api/desk/presence', Object.assign({action}, extra ? extra() : {}), ev.target);
  $('btn-login').addEventListener('click', presence('login'));
  $('btn-ready').addEventListener('click', presence('ready'));
  $('btn-logout').addEventListener('click', presence('logout'));
  $('btn-pause').addEventListener('click',
    presence('pause', () => ({reason: $('pause-reason').value})));
  $('btn-hangup').addEventListener('click',
    ev => act('/api/desk/call', {action: 'hangup'}, ev.target));
  $('btn-transfer-queue').addEventListener('click', ev => act('/api/desk/call',
    {action: 'transfer_queue', queue: $('transfer-queue').value}, ev.target));
  $('btn-transfer-operator').addEventListener('click', ev => act('/api/desk/call',
    {action: 'transfer_operator', target: $('transfer-target').value.trim()}, ev.target));
  $('btn-callback').addEventListener('click', ev => act('/api/desk/call',
    {action: 'callback', number: $('callback-number').value.trim()}, ev.target));
}

function connect() {
  const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') +
                           location.host + '/ws/desk');
  ws.onopen = () => { $('live').textContent = 'live'; scheduleRefresh(); };
  ws.onmessage = ev => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch (e) { return; }
    if (msg.type === 'pop') showPop(msg);
    else if (msg.type === 'pop_end') endPop(msg);
    else if (msg.type === 'presence') scheduleRefresh();
    else if (msg.type === 'result') say(msg.message, msg.ok);
  };
  ws.onclose = ev => {
    if (ev.code === 4401) { location.href = '/login'; return; }
    $('live').textContent = 'reconnecting…';
    setTimeout(async () => {
      try { await getJson('/api/desk/state'); } catch (e) { if (e.message === 'signed out') return; }
      connect();
    }, 2000);
  };
}

wire();
refreshState().catch(e => say(e.message, false));
connect();
