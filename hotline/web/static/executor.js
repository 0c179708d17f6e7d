// The executor portal works without this file; it only adds comfort.
(() => {
  // a change of a filter applies at once (the form still has its button)
  const filters = document.getElementById('filters');
  if (filters) {
    for (const id of ['f-status', 'f-category', 'f-district', 'f-overdue']) {
      const field = document.getElementById(id);
      if (field) field.addEventListener('change', () => filters.requestSubmit());
    }
  }
  // refusing or sending an appeal on cannot be undone from here: ask once
  for (const form of document.querySelectorAll('form.a-reject, form.a-decline')) {
    form.addEventListener('submit', ev => {
      const label = form.querySelector('button')?.textContent || 'this';
      if (!window.confirm(`${label}: are you sure?`)) ev.preventDefault();
    });
  }
  // a second click while the first is on its way does not post twice
  for (const form of document.querySelectorAll('main form[method=post]')) {
    form.addEventListener('submit', ev => {
      if (ev.defaultPrevented) return;
      for (const button of form.querySelectorAll('button')) button.disabled = true;
    });
  }
})();
