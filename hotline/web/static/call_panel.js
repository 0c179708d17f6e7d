// The in-call panel: every action is a JSON call with the page's CSRF token; the
// server checks everything and its messages are shown by the fields they name.
(() => {
  const $ = id => document.getElementById(id);
  const panel = $('panel');
  if (!panel) return;
  const uniqueid = panel.dataset.uniqueid;
  const callApi = `/api/desk/calls/${encodeURIComponent(uniqueid)}`;
  const csrf = $('csrf').value;

  class ApiError extends Error {
    constructor(status, body) {
      super(body.message || `HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  async function request(url, options = {}) {
    const response = await fetch(url, {credentials: 'same-origin', ...options,
      headers: {Accept: 'application/json', ...(options.headers || {})}});
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new ApiError(response.status, body);
    return body;
  }
  const getJSON = url => request(url);
  const postJSON = (url, data) => request(url, {method: 'POST', body: JSON.stringify(data),
    headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf}});

  function node(tag, text, className) {
    const el = document.createElement(tag);
    if (text !== undefined && text !== null) el.textContent = text;
    if (className) el.className = className;
    return el;
  }
  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }
  function option(select, value, label) {
    const o = node('option', label);
    o.value = value;
    select.appendChild(o);
  }
  function debounce(fn, ms) {
    let timer = null;
    return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
  }
  function showError(error) {
    const box = $('panel-error');
    box.textContent = error.message || String(error);
    box.hidden = false;
  }
  function formId() {  // crypto.randomUUID needs a secure context; this does not
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(bytes, b => b.toString(16).padStart(2, '0')).join('');
  }

  // --- the call -----------------------------------------------------------------
  let dispositionLabels = {};
  async function loadCall() {
    const info = await getJSON(callApi);
    const call = info.call;
    $('caller-number').textContent = call.caller_number || 'номер прихований';
    $('caller-name').textContent = call.caller_name || '';
    $('call-language').textContent = call.language || '—';
    $('call-ivr').textContent = call.ivr_choice || '—';
    $('call-queue').textContent = call.queue || '—';
    $('call-operator').textContent = call.operator_name || '—';
    const citizen = info.citizen;
    $('citizen').textContent = citizen
      ? `${citizen.name || 'без імені'} (${citizen.phone})` : 'новий громадянин';
    $('call-appeals').textContent = info.appeals.map(a => a.number).join(', ') || '—';
    for (const s of info.spheres) option($('tax-sphere'), s.code, s.name_uk);
    if (info.queue_spheres.length === 1) $('tax-sphere').value = info.queue_spheres[0].code;
    for (const d of info.districts) option($('f-district'), d.code, d.name_uk);
    for (const d of info.dispositions) {
      option($('disposition'), d.code, d.label);
      dispositionLabels[d.code] = d.label;
    }
    if (call.disposition) $('disposition').value = call.disposition;
    $('f-phone').value = citizen ? citizen.phone : call.caller_number;
    if (citizen) {
      $('f-name').value = citizen.name || '';
      $('f-email').value = citizen.email || '';
      $('f-channel').value = citizen.notify_channel || 'sms';
      $('f-consent').checked = !!citizen.notify_consent;
    } else {
      $('f-name').value = call.caller_name || '';
    }
    if (info.article) {
      $('kb-used').textContent = `Відповідь записано: ${info.article.title}`;
      $('kb-used').hidden = false;
    }
    searchTaxonomy();
  }

  // --- taxonomy -------------------------------------------------------------------
  async function searchTaxonomy() {
    const params = new URLSearchParams({q: $('tax-q').value, sphere: $('tax-sphere').value});
    try {
      const {issues} = await getJSON(`/api/desk/taxonomy?${params}`);
      const list = $('tax-results');
      clear(list);
      for (const issue of issues) {
        const button = node('button', issue.name_uk);
        button.type = 'button';
        button.dataset.code = issue.code;
        if (issue.code === $('f-category').value) button.classList.add('chosen');
        button.appendChild(node('span', ` · ${issue.sphere_name}`, 'sub'));
        button.addEventListener('click', () => chooseCategory(issue));
        const item = node('li');
        item.appendChild(button);
        list.appendChild(item);
      }
      if (!issues.length) list.appendChild(node('li', 'нічого не знайдено', 'sub'));
    } catch (error) { showError(error); }
  }
  function chooseCategory(issue) {
    $('f-category').value = issue.code;
    $('chosen-category').textContent = `${issue.sphere_name} → ${issue.name_uk}`;
    for (const b of $('tax-results').querySelectorAll('button')) {
      b.classList.toggle('chosen', b.dataset.code === issue.code);
    }
  }
  $('tax-q').addEventListener('input', debounce(searchTaxonomy, 200));
  $('tax-sphere').addEventListener('change', searchTaxonomy);

  // --- address and district ---------------------------------------------------------
  async function lookupStreet() {
    const q = $('f-address').value.trim();
    const note = $('district-note');
    if (!q) { note.textContent = ''; return; }
    try {
      const found = await getJSON(`/api/desk/streets?${new URLSearchParams({q})}`);
      const list = $('street-list');
      clear(list);
      for (const s of found.streets) option(list, s.name, '');
      if (found.district) {
        const label = $('f-district').querySelector(`option[value="${found.district}"]`);
        note.textContent = `Район за адресою: ${label ? label.textContent : found.district}`;
        if (!$('f-district').dataset.manual) $('f-district').value = found.district;
      } else {
        note.textContent = 'Вулиці немає в переліку: оберіть район.';
        if (!$('f-district').dataset.manual) $('f-district').value = '';
      }
    } catch (error) { showError(error); }
  }
  $('f-address').addEventListener('input', debounce(lookupStreet, 250));
  $('f-district').addEventListener('change', () => {
    $('f-district').dataset.manual = $('f-district').value ? '1' : '';
  });

  // --- filing the appeal --------------------------------------------------------------
  let currentFormId = formId();
  function clearFieldErrors() {
    for (const p of document.querySelectorAll('[data-error-for]')) { p.hidden = true; p.textContent = ''; }
    for (const f of document.querySelectorAll('[aria-invalid]')) f.removeAttribute('aria-invalid');
  }
  const FIELD_INPUT = {category: 'tax-q', address: 'f-address', district: 'f-district',
    text: 'f-text', phone: 'f-phone', name: 'f-name', email: 'f-email',
    notify_channel: 'f-channel', consent: 'f-consent'};
  function showFieldErrors(fields) {
    for (const [name, message] of Object.entries(fields)) {
      const box = document.querySelector(`[data-error-for="${name}"]`)
        || document.querySelector('[data-error-for="form"]');
      box.textContent = box.dataset.errorFor === name ? message : `${name}: ${message}`;
      box.hidden = false;
      const input = $(FIELD_INPUT[name] || '');
      if (input) input.setAttribute('aria-invalid', 'true');
    }
  }
  $('appeal-form').addEventListener('submit', async ev => {
    ev.preventDefault();
    clearFieldErrors();
    $('panel-error').hidden = true;
    const button = $('file-appeal');
    button.disabled = true;
    try {
      const result = await postJSON(`${callApi}/appeal`, {
        category: $('f-category').value, address: $('f-address').value,
        district: $('f-district').value, text: $('f-text').value, phone: $('f-phone').value,
        name: $('f-name').value, email: $('f-email').value,
        notify_channel: $('f-channel').value, consent: $('f-consent').checked,
        form_id: currentFormId,
      });
      const appeal = result.appeal;
      $('appeal-number').textContent = appeal.number;
      $('appeal-routed').textContent = result.duplicate_of
        ? `Таку проблему вже зареєстровано: ${result.duplicate_of}; громадянина долучено.`
        : `Виконавець: ${appeal.executor_name || 'диспетчер 1551'}`;
      $('appeal-result').hidden = false;
      const appeals = $('call-appeals');
      appeals.textContent = appeals.textContent === '—' ? appeal.number
        : `${appeals.textContent}, ${appeal.number}`;
      if (!$('disposition').value) $('disposition').value = 'appeal_created';
      currentFormId = formId();  // the next submission is another appeal
    } catch (error) {
      const fields = error.body && error.body.details && (error.body.details.fields
        || (error.body.details.field ? {[error.body.details.field]: error.message} : null));
      if (fields) showFieldErrors(fields); else showError(error);
    } finally {
      button.disabled = false;
    }
  });

  // --- knowledge base and directory -------------------------------------------------
  let shownArticle = null;
  async function searchKb() {
    const q = $('kb-q').value.trim();
    const list = $('kb-results');
    try {
      const {articles} = await getJSON(`/api/desk/kb?${new URLSearchParams({q})}`);
      clear(list);
      for (const a of articles) {
        const button = node('button', a.title);
        button.type = 'button';
        button.dataset.id = a.id;
        if (a.category_name) button.appendChild(node('span', ` · ${a.category_name}`, 'sub'));
        button.addEventListener('click', () => openArticle(a.id));
        const item = node('li');
        item.appendChild(button);
        list.appendChild(item);
      }
      if (!articles.length && q) list.appendChild(node('li', 'нічого не знайдено', 'sub'));
    } catch (error) { showError(error); }
  }
  async function openArticle(id) {
    try {
      const {article} = await getJSON(`/api/desk/kb/${encodeURIComponent(id)}`);
      shownArticle = article;
      $('kb-title').textContent = article.title;
      $('kb-body').textContent = article.body;
      $('kb-article').hidden = false;
    } catch (error) { showError(error); }
  }
  $('kb-use').addEventListener('click', async () => {
    if (!shownArticle) return;
    try {
      await postJSON(`${callApi}/article`, {article_id: shownArticle.id});
      $('kb-used').textContent = `Відповідь записано: ${shownArticle.title}`;
      $('kb-used').hidden = false;
      if (!$('disposition').value) $('disposition').value = 'consultation';
    } catch (error) { showError(error); }
  });
  $('kb-q').addEventListener('input', debounce(searchKb, 250));

  async function searchDirectory() {
    const q = $('dir-q').value.trim();
    const list = $('dir-results');
    try {
      const {services} = await getJSON(`/api/desk/directory?${new URLSearchParams({q})}`);
      clear(list);
      for (const s of services) {
        const item = node('li');
        item.appendChild(node('strong', s.phone));
        item.appendChild(node('span', ` ${s.name}`));
        const more = [s.description, s.hours].filter(Boolean).join(' · ');
        if (more) item.appendChild(node('div', more, 'sub'));
        list.appendChild(item);
      }
      if (!services.length) list.appendChild(node('li', 'нічого не знайдено', 'sub'));
    } catch (error) { showError(error); }
  }
  $('dir-q').addEventListener('input', debounce(searchDirectory, 200));

  // --- wrap-up -----------------------------------------------------------------------
  $('save-disposition').addEventListener('click', async () => {
    const value = $('disposition').value;
    const saved = $('disposition-saved');
    if (!value) {
      saved.textContent = 'Оберіть результат дзвінка.';
      saved.hidden = false;
      return;
    }
    try {
      await postJSON(`${callApi}/disposition`, {disposition: value});
      saved.textContent = `Збережено: ${dispositionLabels[value] || value}`;
      saved.hidden = false;
    } catch (error) { showError(error); }
  });

  loadCall().catch(showError);
})();
