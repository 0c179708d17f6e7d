const esc = s => String(s ?? '').replace(/[&<>"']/g,
  c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
let csrf = '';
let names = {};
async function call(method, url, body, type) {
  const r = await fetch(url, {method, credentials: 'same-origin', body,
    headers: {'X-CSRF-Token': csrf, 'Content-Type': type || 'application/json'}});
  if (r.status === 401) { location.href = '/login'; throw new Error('signed out'); }
  const data = await r.json();
  if (!r.ok) throw new Error(data.message || r.statusText);
  return data;
}
async function refresh() {
  const data = await call('GET', '/api/admin/announcements');
  csrf = data.csrf;
  const kind = document.getElementById('kind');
  if (!kind.options.length) {
    kind.innerHTML = data.kinds.map(k => `<option>${esc(k)}</option>`).join('');
    document.getElementById('districts').insertAdjacentHTML('beforeend', data.districts.map(d =>
      `<label><input type="checkbox" name="district" value="${esc(d.id)}"> ${esc(d.name_uk)}</label>`
    ).join(' '));
  }
  data.districts.forEach(d => { names[d.id] = d.name_uk; });
  document.querySelector('#list tbody').innerHTML = data.announcements.map(a =>
    `<tr data-id="${esc(a.id)}"><td>${esc(a.id)}</td><td>${esc(a.kind)}</td>
     <td>${a.district_ids.map(d => esc(names[d] || d)).join(', ')}</td>
     <td>${esc(new Date(a.starts_at).toLocaleString('uk-UA'))}</td>
     <td>${esc(new Date(a.ends_at).toLocaleString('uk-UA'))}</td><td>${esc(a.text)}</td>
     <td>${esc(a.audio_source)} <input type="file" accept="audio/wav" class="upload"></td>
     <td><button class="cancel">Stop</button></td></tr>`).join('');
}
document.getElementById('create').addEventListener('submit', async ev => {
  ev.preventDefault();
  const f = ev.target, status = document.getElementById('status');
  const iso = v => new Date(v).toISOString();
  try {
    await call('POST', '/api/admin/announcements', JSON.stringify({
      kind: f.kind.value, text: f.text.value, starts_at: iso(f.starts_at.value),
      ends_at: iso(f.ends_at.value),
      district_ids: [...f.querySelectorAll('input[name=district]:checked')].map(c => +c.value)}));
    status.textContent = 'published'; f.reset(); refresh();
  } catch (e) { status.textContent = e.message; }
});
document.querySelector('#list').addEventListener('click', async ev => {
  if (!ev.target.classList.contains('cancel')) return;
  const id = ev.target.closest('tr').dataset.id;
  await call('POST', `/api/admin/announcements/${id}/cancel`); refresh();
});
document.querySelector('#list').addEventListener('change', async ev => {
  if (!ev.target.classList.contains('upload') || !ev.target.files.length) return;
  const id = ev.target.closest('tr').dataset.id;
  try { await call('PUT', `/api/admin/announcements/${id}/recording`, ev.target.files[0], 'audio/wav'); }
  catch (e) { alert(e.message); }
  refresh();
});
refresh();
