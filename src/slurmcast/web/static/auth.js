/**
 * auth.js: who is looking. With `auth: "jwt"` the page needs a token: taken once from
 * `?token=` (then removed from the address bar), or typed into the sign-in box; kept in
 * sessionStorage for this tab. The user and roles shown are the server's word
 * (`client.identity`, its `authenticated` reply) from the first connection on; before it,
 * they come from the token's payload, decoded for display only (the server checks it).
 * @module auth
 */

const STORAGE_KEY = 'slurmcast.token';

/**
 * @typedef {object} Identity
 * @property {string|null} user
 * @property {string[]} roles
 * @property {boolean} isAdmin
 * @property {number|null} expiresAt  epoch ms
 */

/** @param {string} token @returns {object|null} the JWT's payload, unverified */
export function decodeJwt(token) {
  try {
    const part = token.split('.')[1];
    if (!part) return null;
    const base64 = part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '=');
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const payload = JSON.parse(new TextDecoder().decode(bytes));
    return payload && typeof payload === 'object' ? payload : null;
  } catch {
    return null;
  }
}

export class Auth {
  /**
   * @param {'none'|'jwt'} mode
   * @param {{form: HTMLFormElement, panel: HTMLElement, input: HTMLInputElement, error: HTMLElement,
   *   badge: HTMLElement, signout: HTMLButtonElement}} ui
   */
  constructor(mode, ui) {
    this.mode = mode === 'jwt' ? 'jwt' : 'none';
    this.ui = ui;
    /** @type {string|null} */
    this.token = null;
    /** @type {Identity} */
    this.identity = { user: null, roles: [], isAdmin: false, expiresAt: null };
    /** whether `identity` is the server's (confirm()) rather than the token's unverified payload */
    this.confirmed = false;
    this._listeners = new Set();
    if (this.mode === 'jwt') {
      this.token = takeTokenFromUrl() ?? readStored();
      if (this.token) this._setIdentityFromToken(this.token);
    }
    ui.signout.addEventListener('click', () => this.signOut());
  }

  /** Whether the page may connect now (no auth needed, or a token at hand). */
  get ready() {
    return this.mode === 'none' || Boolean(this.token);
  }

  /**
   * Show the sign-in box and resolve with the token once one is submitted.
   * @param {string} [message]  why (an expired or refused token)
   * @returns {Promise<string>}
   */
  askForToken(message = '') {
    const { panel, form, input, error } = this.ui;
    panel.hidden = false;
    error.textContent = message;
    this._renderBadge();
    input.focus();
    return new Promise((resolve) => {
      const onSubmit = (event) => {
        event.preventDefault();
        const token = input.value.trim();
        if (!token) {
          error.textContent = 'Paste a token first.';
          return;
        }
        if (!decodeJwt(token)) {
          error.textContent = 'That does not look like a JWT (three base64url parts separated by dots).';
          return;
        }
        form.removeEventListener('submit', onSubmit);
        input.value = '';
        error.textContent = '';
        panel.hidden = true;
        this._store(token);
        resolve(token);
      };
      form.addEventListener('submit', onSubmit);
    });
  }

  /** The token was refused: forget it, and sign in again (reloads the page once signed in). */
  async rejected(reason) {
    this._forget();
    document.body.dataset.signedOut = 'true';
    await this.askForToken(reason);
    location.reload();
  }

  /** Forget the token and start over. */
  signOut() {
    this._forget();
    location.replace(location.pathname);
  }

  /**
   * The server's word on who this is: the client's `identity` (from the `authenticated`
   * reply). It replaces what the token's payload said; null (no authentication) changes nothing.
   * @param {{user: string, roles: readonly string[], expiresAt: number|null}|null} info
   */
  confirm(info) {
    if (!info || typeof info.user !== 'string') return;
    const roles = Array.isArray(info.roles) ? info.roles.map(String) : [];
    const changed = info.user !== this.identity.user || roles.join() !== this.identity.roles.join();
    this.confirmed = true;
    this.identity = {
      user: info.user,
      roles,
      isAdmin: roles.includes('admin'),
      expiresAt: typeof info.expiresAt === 'number' ? info.expiresAt : null,
    };
    this._renderBadge();
    if (changed) for (const listener of this._listeners) listener(this.identity);
  }

  /** @param {(identity: Identity) => void} listener */
  onChange(listener) {
    this._listeners.add(listener);
  }

  /** Headers for the HTTP API. */
  headers(extra = {}) {
    return this.token ? { ...extra, Authorization: `Bearer ${this.token}` } : { ...extra };
  }

  /**
   * fetch() on the HTTP API with the token; resolves with the parsed JSON body, rejects
   * with an Error carrying `status`, the server's `code` and `field` on a non-2xx answer.
   * @param {string} path @param {RequestInit & {json?: any}} [init]
   */
  async api(path, init = {}) {
    const { json, ...rest } = init;
    const headers = this.headers(json !== undefined ? { 'Content-Type': 'application/json' } : {});
    const response = await fetch(path, {
      ...rest,
      headers: { ...headers, ...(rest.headers ?? {}) },
      body: json !== undefined ? JSON.stringify(json) : rest.body,
      credentials: 'same-origin',
    });
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (!response.ok) {
      // `{success: false, code, message}`, or the same nested in `error`; `field` names the
      // offending field where the server says which.
      const detail = body?.error && typeof body.error === 'object' ? body.error : body;
      const error = new Error(detail?.message ?? `${response.status} ${response.statusText}`);
      error.status = response.status;
      error.code = detail?.code ?? null;
      error.field = typeof detail?.field === 'string' ? detail.field : null;
      throw error;
    }
    return body;
  }

  render() {
    this._renderBadge();
  }

  /** The fallback until the server confirms who this is: the token's payload, unverified. */
  _setIdentityFromToken(token) {
    this.confirmed = false;
    const payload = decodeJwt(token) ?? {};
    const roles = Array.isArray(payload.roles) ? payload.roles.map(String) : [];
    this.identity = {
      user: typeof payload.sub === 'string' ? payload.sub : null,
      roles,
      isAdmin: roles.includes('admin'),
      expiresAt: typeof payload.exp === 'number' ? payload.exp * 1000 : null,
    };
  }

  _store(token) {
    this.token = token;
    try {
      sessionStorage.setItem(STORAGE_KEY, token);
    } catch {
      // storage disabled: the token lives until the page is closed
    }
    this._setIdentityFromToken(token);
    this._renderBadge();
  }

  _forget() {
    this.token = null;
    this.confirmed = false;
    this.identity = { user: null, roles: [], isAdmin: false, expiresAt: null };
    try {
      sessionStorage.removeItem(STORAGE_KEY);
    } catch {
      // nothing stored
    }
    this._renderBadge();
  }

  _renderBadge() {
    const { badge, signout } = this.ui;
    const { user, roles, isAdmin } = this.identity;
    const signedIn = this.mode === 'jwt' && Boolean(this.token);
    badge.hidden = !signedIn;
    signout.hidden = !signedIn;
    badge.replaceChildren();
    if (!signedIn) return;
    const name = document.createElement('span');
    name.className = 'user-name';
    name.textContent = user ?? 'signed in';
    badge.append(name);
    if (isAdmin) {
      const role = document.createElement('span');
      role.className = 'role-tag';
      role.textContent = 'admin';
      badge.append(role);
    }
    badge.dataset.user = user ?? '';
    badge.title = `Signed in as ${user ?? '?'}${roles.length ? ` (roles: ${roles.join(', ')})` : ''}`;
  }
}

function takeTokenFromUrl() {
  const url = new URL(location.href);
  const token = url.searchParams.get('token');
  if (token === null) return null;
  url.searchParams.delete('token');
  history.replaceState(history.state, '', url.pathname + (url.search ? url.search : '') + url.hash);
  const trimmed = token.trim();
  if (!trimmed) return null;
  try {
    sessionStorage.setItem(STORAGE_KEY, trimmed);
  } catch {
    // storage disabled: kept in memory only
  }
  return trimmed;
}

function readStored() {
  try {
    return sessionStorage.getItem(STORAGE_KEY) || null;
  } catch {
    return null;
  }
}
