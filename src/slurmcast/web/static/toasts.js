/**
 * toasts.js: short-lived messages in the corner (#toasts, an aria-live region).
 * @module toasts
 */
import { h } from './format.js';

const MAX_TOASTS = 5;

export class Toasts {
  /** @param {HTMLElement} container  #toasts */
  constructor(container) {
    this.container = container;
  }

  /**
   * Show a toast.
   * @param {{title?: string|null, text: string, kind?: 'info'|'success'|'warning'|'error'|'broadcast', timeout?: number}} toast
   * @returns {HTMLElement}
   */
  show({ title = null, text, kind = 'info', timeout = 7000 }) {
    const close = h('button', { type: 'button', class: 'toast-close', 'aria-label': 'Dismiss' }, '×');
    const el = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
      h('div', { class: 'toast-body' },
        title ? h('strong', { class: 'toast-title', text: title }) : null,
        h('span', { class: 'toast-text', text })),
      close);
    let timer = null;
    const dismiss = () => {
      clearTimeout(timer);
      el.classList.add('leaving');
      setTimeout(() => el.remove(), 200);
    };
    close.addEventListener('click', dismiss);
    // Hovering or focusing a toast keeps it until the pointer or focus leaves.
    const arm = () => { clearTimeout(timer); timer = setTimeout(dismiss, timeout); };
    el.addEventListener('mouseenter', () => clearTimeout(timer));
    el.addEventListener('mouseleave', arm);
    el.addEventListener('focusin', () => clearTimeout(timer));
    el.addEventListener('focusout', arm);
    this.container.append(el);
    while (this.container.children.length > MAX_TOASTS) this.container.firstElementChild.remove();
    arm();
    return el;
  }
}
