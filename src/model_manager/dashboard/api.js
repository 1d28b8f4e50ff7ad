// Calls to the server's JSON management API, the one the command line uses.
//
// Once the server has API keys, a call answered 401 (no or wrong key) or 403 (the key's role may
// not do this) asks for a key and is retried with it; if the user cancels, the call fails with
// KeyDeclined. The key is kept in this tab's sessionStorage only and sent as
// "Authorization: Bearer <key>".

import { notify } from "./dom.js";

const STORAGE = "model-manager.api-key";

// The user cancelled the key form that a call was waiting on.
export class KeyDeclined extends Error {}

let asking = null; // the pending key request, shared by every call that waits for a key

export async function api(method, path, body) {
  for (;;) {
    const response = await fetch(path, requestInit(method, body));
    if (response.status === 401 || response.status === 403) {
      await askForKey(await errorOf(response)); // rejects when the user cancels
      continue;
    }
    if (!response.ok) {
      throw new Error(await errorOf(response));
    }
    return response.status === 204 ? null : response.json();
  }
}

// A change the user asked for: confirmed first, then made; a failure is shown with the server's
// message. Returns the server's answer, or null when cancelled or failed.
export async function act(question, method, path, body) {
  if (!window.confirm(question)) {
    return null;
  }
  try {
    return await api(method, path, body);
  } catch (error) {
    notify(`${method} ${path} failed: ${error.message}`, "error");
    return null;
  }
}

export function hasKey() {
  return sessionStorage.getItem(STORAGE) !== null;
}

export function askForKey(reason) {
  if (asking === null) {
    asking = new Promise((resolve, reject) => showKeyForm(reason, resolve, reject)).finally(() => {
      asking = null;
    });
  }
  return asking;
}

function requestInit(method, body) {
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(STORAGE);
  if (key) {
    headers.Authorization = `Bearer ${key}`;
  }
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return init;
}

async function errorOf(response) {
  try {
    const data = await response.json();
    if (data && typeof data.error === "string") {
      return data.error;
    }
  } catch {
    // not JSON: the status line says enough
  }
  return `${response.status} ${response.statusText}`;
}

function showKeyForm(reason, resolve, reject) {
  const form = document.getElementById("key-form");
  const input = document.getElementById("key-input");
  const cancel = document.getElementById("key-cancel");
  document.getElementById("key-reason").textContent = reason;
  input.value = "";
  form.hidden = false;
  input.focus();
  const done = () => {
    form.hidden = true;
    form.removeEventListener("submit", submitted);
    cancel.removeEventListener("click", cancelled);
  };
  const submitted = (event) => {
    event.preventDefault();
    sessionStorage.setItem(STORAGE, input.value.trim());
    input.value = "";
    done();
    resolve();
  };
  const cancelled = () => {
    done();
    reject(new KeyDeclined(`no API key given (${reason})`));
  };
  form.addEventListener("submit", submitted);
  cancel.addEventListener("click", cancelled);
}
