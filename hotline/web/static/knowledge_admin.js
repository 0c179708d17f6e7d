// The knowledge base's admin page: list, search, create and edit articles (JSON API).
(() => {
  const $ = id => document.getElementById(id);
  if (!$('kb-admin')) return;
  const csrf = $('csrf').value;
  const base = '/api/admin/kb/articles';

  async function request(url, options = {}) {
    const response = await fetch(url, {credentials: 'same-origin', ...options,
      headers: {Accept: 'application/json', ...(options.headers || {})}});
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw Object.assign(new Error(body.message || `HTTP ${response.status}`), {body});
    return body;
  }
  function cell(row, text) {
    const td = document.createElement('td');
    td.textContent = text;
    row.appendChild(td);
    return td;
  }
  function debounce(fn, ms) {
    let timer = null;
    return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }

  let categoriesLoaded = false;
  async function load() {
    const params = new URLSearchParams({q: $('a-q').value});
    const data = await request(`${base}?${params}`);
    if (!categoriesLoaded) {
      for (const c of data.categories) {
        const o = document.createElement('option');
        o.value = c.code;
        o.textContent = c.name_uk;
        $('a-category').appendChild(o);
      }
      categoriesLoaded = true;
    }
    const body = $('a-list').querySelector('tbody');
    while (body.firstChild) body.removeChild(body.firstChild);
    for (const a of data.articles) {
      const row = document.createElement('tr');
      const link = document.createElement('button');
      link.type = 'button';
      link.textContent = a.title;
      link.dataset.id = a.id;
      link.addEventListener('click', () => edit(a.id));
      cell(row, '').appendChild(link);
      cell(row, a.category_name || 'загальна');
      cell(row, a.active ? 'активна' : 'прихована');
      body.appendChild(row);
    }
  }
  function clearErrors() {
    for (const p of document.querySelectorAll('[data-error-for]')) { p.hidden = true; p.textContent = ''; }
  }
  function fill(article) {
    clearErrors();
    $('a-saved').hidden = true;
    $('a-id').value = article ? article.id : '';
    $('a-version').value = article ? article.version : '';
    $('a-title').value = article ? article.title : '';
    $('a-category').value = article && article.category ? article.category : '';
    $('a-keywords').value = article ? article.keywords : '';
    $('a-body').value = article ? article.body : '';
    $('a-active').checked = article ? article.active : true;
    $('a-heading').textContent = article ? `Стаття №${article.id}` : 'Нова стаття';
  }
  async function edit(id) {
    const {article} = await request(`${base}/${encodeURIComponent(id)}`);
    fill(article);
  }
  $('a-new').addEventListener('click', () => fill(null));
  $('a-q').addEventListener('input', debounce(() => load().catch(console.warn), 250));
  $('a-form').addEventListener('submit', async ev => {
    ev.preventDefault();
    clearErrors();
    $('a-saved').hidden = true;
    const id = $('a-id').value;
    const data = {title: $('a-title').value, body: $('a-body').value,
      keywords: $('a-keywords').value, category: $('a-category').value,
      active: $('a-active').checked};
    if (id) data.version = $('a-version').value;
    try {
      const {article} = await request(id ? `${base}/${encodeURIComponent(id)}` : base, {
        method: 'POST', body: JSON.stringify(data),
        headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf}});
      fill(article);
      $('a-saved').textContent = 'Збережено.';
      $('a-saved').hidden = false;
      await load();
    } catch (error) {
      const details = (error.body && error.body.details) || {};
      const fields = details.fields || {form: error.message};
      for (const [name, message] of Object.entries(fields)) {
        const box = document.querySelector(`[data-error-for="${name}"]`)
          || document.querySelector('[data-error-for="form"]');
        box.textContent = message;
        box.hidden = false;
      }
    }
  });
  load().catch(error => { $('a-saved').textContent = error.message; $('a-saved').hidden = false; });
})();
