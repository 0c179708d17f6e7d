// The informing desk: campaigns and dead letters through the JSON APIs.
// Data is put into the page with textContent only: texts come from people.
(() => {
  const main = document.getElementById('informing');
  const csrf = main.dataset.csrf;
  const districts = JSON.parse(main.dataset.districts || '{}');
  const topics = JSON.parse(main.dataset.topics || '{}');
  const notice = document.getElementById('notice');
  let shown = null;  // the campaign whose detail is open
  let timer = null;

  function say(text, isError) {
    notice.textContent = text;
    notice.className = isError ? 'error' : '';
  }

  async function api(method, path, body) {
    const init = {method, headers: {'Accept': 'application/json'}, credentials: 'same-origin'};
    if (method !== 'GET') {
      init.headers['X-CSRF-Token'] = csrf;
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body || {});
    }
    const response = await fetch(path, init);
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.message || `${response.status} ${response.statusText}`);
    return data;
  }

  function cell(row, text) {
    const td = document.createElement('td');
    td.textContent = text === null || text === undefined ? '' : String(text);
    row.appendChild(td);
    return td;
  }

  function button(label, onClick) {
    const b = document.createElement('button');
    b.type = 'button';
    b.textContent = label;
    b.addEventListener('click', onClick);
    return b;
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString('uk-UA') : '';
  }

  // --- the new campaign form --------------------------------------------------
  const topicSelect = document.getElementById('c-topic');
  for (const [code, label] of Object.entries(topics)) {
    topicSelect.appendChild(new Option(label, code));
  }
  const districtBox = document.getElementById('c-districts');
  for (const [code, label] of Object.entries(districts)) {
    const l = document.createElement('label');
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.value = code;
    box.name = 'district';
    l.appendChild(box);
    l.appendChild(document.createTextNode(' ' + label));
    districtBox.appendChild(l);
  }

  document.getElementById('new-campaign').addEventListener('submit', async ev => {
    ev.preventDefault();
    const chosen = [...districtBox.querySelectorAll('input:checked')].map(b => b.value);
    if (!chosen.length) { say('Choose at least one district.', true); return; }
    const local = document.getElementById('c-send-at').value;
    const body = {
      topic: topicSelect.value, districts: chosen,
      text_uk: document.getElementById('c-text-uk').value,
      text_en: document.getElementById('c-text-en').value,
      send_at: local ? new Date(local).toISOString() : '',
    };
    try {
      const campaign = await api('POST', '/api/campaigns', body);
      say(`Draft ${campaign.id} saved: ${campaign.audience} subscribers would receive it.`);
      ev.target.reset();
      await listCampaigns();
      await showCampaign(campaign.id);
    } catch (e) { say(e.message, true); }
  });

  // --- campaigns --------------------------------------------------------------
  async function listCampaigns() {
    const data = await api('GET', '/api/campaigns');
    const body = document.querySelector('#campaign-list tbody');
    body.replaceChildren();
    for (const c of data.campaigns) {
      const row = document.createElement('tr');
      row.dataset.id = c.id;
      for (const v of [c.id, topics[c.topic] || c.topic, c.status, when(c.send_at),
                       c.created_by, c.approved_by, c.recipients]) cell(row, v);
      cell(row, '').appendChild(button('Open', () => showCampaign(c.id)));
      body.appendChild(row);
    }
  }

  async function showCampaign(id) {
    const c = await api('GET', `/api/campaigns/${id}`);
    shown = id;
    document.getElementById('campaign-detail').hidden = false;
    document.getElementById('d-id').textContent = c.id;
    document.getElementById('d-status').textContent = c.status;
    document.getElementById('d-districts').textContent =
      (c.districts || []).map(d => districts[d] || d).join(', ');
    document.getElementById('d-audience').textContent = c.audience;
    document.getElementById('d-recipients').textContent = c.recipients ?? '—';
    document.getElementById('d-text').textContent = `${c.text_uk}\n\n${c.text_en}`;
    for (const td of document.querySelectorAll('#d-progress td')) {
      td.textContent = c.progress[td.dataset.k];
    }
    document.getElementById('d-approve').hidden = c.status !== 'draft';
    document.getElementById('d-cancel').hidden = c.status === 'cancelled';
    // a campaign on its way is followed until nothing is left queued
    clearTimeout(timer);
    if (c.status === 'approved' && (c.progress.queued || c.progress.not_fanned_out)) {
      timer = setTimeout(() => showCampaign(id).catch(e => say(e.message, true)), 3000);
    }
  }

  async function act(action, question) {
    if (shown === null || !window.confirm(question)) return;
    try {
      const c = await api('POST', `/api/campaigns/${shown}/${action}`);
      say(`Campaign ${c.id} is ${c.status}.`);
      await listCampaigns();
      await showCampaign(c.id);
    } catch (e) { say(e.message, true); }
  }
  document.getElementById('d-approve').addEventListener(
    'click', () => act('approve', 'Approve this campaign and send it to its subscribers?'));
  document.getElementById('d-cancel').addEventListener(
    'click', () => act('cancel', 'Cancel this campaign? What was sent stays sent.'));

  // --- dead letters -----------------------------------------------------------
  async function listDead() {
    const data = await api('GET', '/api/admin/outbox?dead=1');
    const body = document.querySelector('#dead-list tbody');
    body.replaceChildren();
    for (const m of data.messages) {
      const row = document.createElement('tr');
      row.dataset.id = m.id;
      for (const v of [m.id, m.provider, m.recipient, m.attempts, m.last_error,
                       when(m.created_at)]) cell(row, v);
      cell(row, '').appendChild(button('Replay', async () => {
        try {
          await api('POST', `/api/admin/outbox/${m.id}/replay`);
          say(`Message ${m.id} is queued again.`);
          await listDead();
        } catch (e) { say(e.message, true); }
      }));
      body.appendChild(row);
    }
    document.getElementById('replay-all').disabled = !data.messages.length;
  }
  document.getElementById('replay-all').addEventListener('click', async () => {
    if (!window.confirm('Queue every dead letter again?')) return;
    try {
      const r = await api('POST', '/api/admin/outbox/replay-dead');
      say(`${r.replayed} dead letters are queued again.`);
      await listDead();
    } catch (e) { say(e.message, true); }
  });
  document.getElementById('refresh-dead').addEventListener(
    'click', () => listDead().catch(e => say(e.message, true)));

  listCampaigns().catch(e => say(e.message, true));
  listDead().catch(e => say(e.message, true));
})();
