// A JSON request to the server: its answer, or an Error with the server's
// reason.
export async function send(method, url, body) {
  const res = await fetch(url, { method, headers: { 'content-type': 'application/json' }, body: body && JSON.stringify(body) });
  const out = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(out.error || `the server answered ${res.status}`);
  return out;
}

// A JSON request whose answer is read whatever its status: {status, ok,
// body} (a 400's field errors, a 409's reason); throws only when the
// server cannot be reached.
export async function ask(method, url, body) {
  const res = await fetch(url, { method, headers: { 'content-type': 'application/json' }, body: body && JSON.stringify(body) });
  return { status: res.status, ok: res.ok, body: await res.json().catch(() => ({})) };
}
