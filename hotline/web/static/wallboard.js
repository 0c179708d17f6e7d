const esc = s => String(s ?? '').replace(/[&<>"']/g,
  c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
const clock = iso => iso ? new Date(iso).toLocaleTimeString('uk-UA', {hour12: false}) : '';
const num = v => v === null || v === undefined ? '—' : esc(v);
async function getJson(url) {
  const r = await fetch(url, {credentials: 'same-origin'});
  if (r.status === 401) { location.href = '/login'; throw new Error('signed out'); }
  return r.json();
}
async function refreshQueues() {
  const data = await getJson('/api/queues');
  document.getElementById('queues').innerHTML = (data.queues || []).map(q =>
    `<div class="card" data-queue="${esc(q.queue)}"><h3>${esc(q.queue)}</h3>
     <div class="big">${esc(q.callers)}</div>waiting · longest ${esc(q.longest_hold)} s<br>
     ${esc(q.available)}/${esc(q.logged_in)} operators available</div>`).join('');
}
async function refreshToday() {
  const data = await getJson('/api/stats/today');
  document.querySelector('#today tbody').innerHTML = data.queues.length ? data.queues.map(q => {
    const pct = v => v === null ? '—' : Math.round(v) + '%';
    return `<tr data-queue="${esc(q.queue)}"><td>${esc(q.queue)}</td><td>${num(q.offered)}</td>
      <td>${num(q.answered)}</td><td>${num(q.abandoned)}</td><td>${num(q.ivr_only)}</td>
      <td>${pct(q.service_level)}</td><td>${pct(q.service_level2)}</td><td>${num(q.asa)}</td>
      <td>${num(q.avg_talk)}</td></tr>`;}).join('')
    : '<tr><td colspan="9" class="empty">No calls today yet</td></tr>';
}
async function refreshCalls() {
  const data = await getJson('/api/calls/recent?limit=25');
  document.querySelector('#calls tbody').innerHTML = data.calls.length ? data.calls.map(c =>
    `<tr data-call-key="${esc(c.call_key)}"><td>${esc(clock(c.started_at))}</td>
     <td><span class="phone">${esc(c.caller_number)}</span> ${esc(c.caller_name)}</td>
     <td>${esc(c.ivr_choice)}</td><td>${esc(c.queue)}</td><td>${num(c.wait_seconds)}</td>
     <td>${num(c.talk_seconds)}</td><td>${esc(c.operator_name)}</td>
     <td class="${esc(c.outcome)}">${esc(c.outcome)}</td></tr>`).join('')
    : '<tr><td colspan="8" class="empty">No calls yet</td></tr>';
}
async function refreshCallbacks() {
  const data = await getJson('/api/callbacks');
  document.querySelector('#callbacks tbody').innerHTML = data.queues.length ? data.queues.map(q =>
    `<tr data-queue="${esc(q.queue)}"><td>${esc(q.queue)}</td><td>${num(q.waiting)}</td>
     <td>${num(q.dialing)}</td><td>${num(q.placed_today)}</td><td>${num(q.failed_today)}</td></tr>`
  ).join('') : '<tr><td colspan="5" class="empty">No callbacks</td></tr>';
}
function refreshAll() { refreshQueues(); refreshToday(); refreshCalls(); refreshCallbacks(); }
let pending = null;
function connect() {
  const ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') +
                           location.host + '/ws/live');
  ws.onopen = () => { document.getElementById('live').textContent = 'live'; refreshAll(); };
  ws.onmessage = ev => {
    let msg;
    try { msg = JSON.parse(ev.data); } catch (e) { msg = {}; }
    if (msg.type === 'queues') { refreshQueues(); refreshCallbacks(); return; }
    clearTimeout(pending); pending = setTimeout(() => { refreshToday(); refreshCalls(); }, 300);
  };
  ws.onclose = ev => {
    if (ev.code === 4401) { location.href = '/login'; return; }  // the session ended
    document.getElementById('live').textContent = 'reconnecting…';
    setTimeout(async () => {
      // A refused handshake looks like any drop: ask the API whether we are still signed in.
      try { await getJson('/api/queues'); } catch (e) { if (e.message === 'signed out') return; }
      connect();
    }, 2000);
  };
}
connect(); setInterval(refreshAll, 30000);
