/* answerdesk chat widget: <script src="https://HOST/widget.js" data-site-key="KEY" async></script>
 * Everything lives in a Shadow DOM; the only requests go to the server this file came from. */
(() => {
  const script = document.currentScript;
  if (!script || window.__answerdesk) return;
  window.__answerdesk = true;
  const base = new URL(script.src).origin;
  const key = script.dataset.siteKey || "";
  const store = `answerdesk:${base}:${key}`;
  const headers = { "content-type": "application/json", "x-site-key": key };
  const api = (path, init) => fetch(base + path, { ...init, headers });
  // The page the customer writes from, for the operators (its query and fragment stay here).
  const pageAddress = () => /^https?:$/.test(location.protocol) ? location.origin + location.pathname : null;

  const host = document.createElement("div");
  host.setAttribute("data-answerdesk", "");
  document.body.appendChild(host);
  const root = host.attachShadow({ mode: "open" });
  root.innerHTML = `<style>
  :host { all: initial; }
  * { box-sizing: border-box; font: 15px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; }
  .bubble { position: fixed; right: 20px; bottom: 20px; width: 56px; height: 56px; border-radius: 50%;
    border: 0; background: var(--c); color: #fff; font-size: 26px; cursor: pointer; z-index: 2147483646;
    box-shadow: 0 4px 14px rgba(0,0,0,.25); }
  .badge { position: absolute; top: -2px; right: -2px; min-width: 20px; height: 20px; padding: 0 5px; border-radius: 10px;
    background: #dc2626; color: #fff; font: 600 12px/20px system-ui, sans-serif; }
  .badge:empty { display: none; }
  .panel { position: fixed; right: 20px; bottom: 88px; width: 370px; height: 540px; max-height: calc(100vh - 110px);
    display: none; flex-direction: column; background: #fff; color: #111; border-radius: 12px; overflow: hidden;
    box-shadow: 0 8px 30px rgba(0,0,0,.25); z-index: 2147483647; }
  .panel.open { display: flex; }
  header { background: var(--c); color: #fff; padding: 12px 14px; display: flex; align-items: center; gap: 8px; }
  header div { flex: 1; min-width: 0; }
  header h2 { margin: 0; font-size: 16px; font-weight: 600; }
  header p { margin: 2px 0 0; font-size: 12px; opacity: .9; }
  header button { background: none; border: 0; color: #fff; font-size: 20px; cursor: pointer; }
  .log { flex: 1; overflow-y: auto; padding: 12px; background: #f7f7f8; }
  .m { margin: 6px 0; display: flex; flex-direction: column; }
  .m .t { padding: 8px 11px; border-radius: 10px; max-width: 85%; white-space: pre-wrap; overflow-wrap: anywhere; }
  .user { align-items: flex-end; } .user .t { background: var(--c); color: #fff; }
  .bot .t, .operator .t { background: #fff; border: 1px solid #e3e3e6; }
  .operator .t { border-color: var(--c); }
  .note { font-size: 12px; color: #666; margin-top: 3px; }
  .fb { display: flex; gap: 4px; margin-top: 3px; align-items: center; }
  .fb span { font-size: 12px; color: #555; }
  .fb button { border: 1px solid #ddd; background: #fff; border-radius: 6px; cursor: pointer; font-size: 13px; padding: 1px 6px; }
  .fb button[aria-pressed="true"] { background: #eef; border-color: var(--c); }
  .sg { display: block; margin: 5px 0; text-align: left; border: 1px solid var(--c); color: var(--c); background: #fff;
    border-radius: 8px; cursor: pointer; padding: 5px 9px; }
  .sg:disabled { opacity: .5; cursor: default; }
  .typing .t::after { content: "…"; animation: blink 1s infinite; } @keyframes blink { 50% { opacity: .2; } }
  form { display: flex; gap: 6px; padding: 10px; border-top: 1px solid #e3e3e6; background: #fff; }
  .privacy { margin: 0; padding: 0 10px 8px; font-size: 12px; background: #fff; }
  .privacy a { color: #555; }
  input { flex: 1; padding: 9px 10px; border: 1px solid #ccc; border-radius: 8px; }
  form button, .human { padding: 8px 12px; border: 0; border-radius: 8px; background: var(--c); color: #fff; cursor: pointer; }
  .human { margin: 0 10px 10px; background: #fff; color: var(--c); border: 1px solid var(--c); }
  form .attach { background: #fff; color: var(--c); border: 1px solid var(--c); padding: 8px 9px; }
  .t img { display: block; max-width: 100%; max-height: 200px; margin-top: 4px; border-radius: 6px; }
  :focus-visible { outline: 2px solid #f59e0b; outline-offset: 2px; }
  @media (max-width: 480px) { .panel { right: 0; bottom: 0; width: 100vw; height: 100vh; max-height: none; border-radius: 0; } }
</style>
<button class="bubble" aria-label="Open chat" aria-expanded="false">💬<span class="badge" aria-hidden="true"></span></button>
<section class="panel" role="dialog" aria-label="Chat">
  <header><div><h2></h2><p class="team" role="status" hidden></p></div><button class="save" aria-label="Save a copy of this conversation" title="Save a copy of this conversation">⤓</button><button class="erase" aria-label="Delete this conversation" title="Delete this conversation">🗑</button><button class="close" aria-label="Close chat">✕</button></header>
  <div class="log" role="log" aria-live="polite"></div>
  <button class="human" type="button">Talk to a human</button>
  <form><input aria-label="Your message" maxlength="4000" autocomplete="off" placeholder="Type your question…">
  <button type="button" class="attach" aria-label="Send a photo or file" title="Send a photo or file to our team" hidden>📎</button>
  <input class="file" type="file" hidden accept="image/png,image/jpeg,image/gif,image/webp,application/pdf">
  <button type="submit">Send</button></form>
  <p class="privacy" hidden><a target="_blank" rel="noopener noreferrer">How we handle your messages</a></p>
</section>`;
  const $ = (s) => root.querySelector(s);
  const bubble = $(".bubble"), panel = $(".panel"), log = $(".log"), input = $('input[aria-label="Your message"]');
  let session = localStorage.getItem(store), ready = null, events = null;
  // 📎 only while a person has (or will have) the conversation: the assistant reads only text.
  const withPerson = (state) => {
    $(".attach").hidden = !state || state === "bot";
    if (state) localStorage.setItem(`${store}:state`, state);
  };
  // Operator messages the customer has not seen (the chat was closed, or they came while the
  // customer was on another page): counted on the bubble until it is opened.
  let unread = 0, eventsAfter = "";
  function unseen(n) {
    unread = n;
    bubble.querySelector(".badge").textContent = n ? String(n) : "";
    bubble.setAttribute("aria-label", `${panel.classList.contains("open") ? "Close" : "Open"} chat${n ? ` (${n} new ${n === 1 ? "message" : "messages"})` : ""}`);
  }
  const isOpen = () => panel.classList.contains("open");
  const seenAt = () => Number(localStorage.getItem(`${store}:seen`) || 0);
  const seen = (ts) => { localStorage.setItem(`${store}:seen`, String(Math.max(ts, seenAt()))); };

  function add(kind, text, note) {
    const m = document.createElement("div");
    m.className = `m ${kind}`;
    const t = document.createElement("div");
    t.className = "t";
    t.textContent = text;
    m.appendChild(t);
    if (note) {
      const n = document.createElement("div");
      n.className = "note";
      n.textContent = note;
      m.appendChild(n);
    }
    log.appendChild(m);
    log.scrollTop = log.scrollHeight;
    return m;
  }
  // A photo or file in a message `m` told as "[image label.png] words": an operator's, or the
  // customer's own in the history. An image is shown, a PDF is a link that opens it.
  function attachment(m, file, told) {
    const t = m.querySelector(".t");
    const [, kind, name, words] = told.match(/^\[(image|file) ([^\]]*)\](?: ([\s\S]*))?$/) || [null, "file", told, ""];
    t.textContent = words || "";
    api(`/api/chat/${session}/files/${file}`).then((r) => {
      if (!r.ok) throw new Error(r.status);
      return r.blob();
    }).then((b) => {
      const url = URL.createObjectURL(b);
      t.appendChild(kind === "image" ? Object.assign(document.createElement("img"), { src: url, alt: name })
        : Object.assign(document.createElement("a"), { href: url, download: name, textContent: `📄 ${name}` }));
      log.scrollTop = log.scrollHeight;
    }).catch(() => { t.append(`${words ? "\n" : ""}📎 ${name} (no longer available)`); });
    return m;
  }
  const sourcesNote = (sources) =>
    sources && sources.length ? "From our FAQ: " + sources.map((s) => s.question).join("; ") : "";
  // 👍/👎 under a reply, or with `about` (an operator's name), under the message that ends that
  // operator's conversation: a rating of their help.
  function feedback(m, replyId, about) {
    if (!replyId) return;
    const bar = document.createElement("div");
    bar.className = "fb";
    if (about) {
      const q = document.createElement("span");
      q.textContent = `How did ${about} do?`;
      bar.appendChild(q);
    }
    for (const [rating, label, name] of [["up", "👍", "Helpful"], ["down", "👎", "Not helpful"]]) {
      const b = document.createElement("button");
      b.textContent = label;
      b.setAttribute("aria-label", name);
      b.setAttribute("aria-pressed", "false");
      b.onclick = async () => {
        await api(`/api/chat/${session}/feedback`, { method: "POST", body: JSON.stringify({ reply_id: replyId, rating }) });
        bar.querySelectorAll("button").forEach((x) => x.setAttribute("aria-pressed", String(x === b)));
      };
      bar.appendChild(b);
    }
    m.appendChild(bar);
  }
  // A reply that offers FAQ questions: each of its lines "- question" becomes a button that asks
  // it. Returns the buttons.
  function suggest(t, suggestions) {
    if (!suggestions || !suggestions.length) return [];
    const offered = new Map(suggestions.map((s) => [`- ${s.question}`, s.question]));
    const parts = [], lines = [], buttons = [];
    for (const line of t.textContent.split("\n")) {
      if (!offered.has(line)) { lines.push(line); continue; }
      parts.push(lines.splice(0).join("\n"));
      const b = document.createElement("button");
      b.type = "button";
      b.className = "sg";
      b.textContent = offered.get(line);
      b.onclick = () => { buttons.forEach((x) => { x.disabled = true; }); ask(b.textContent); };
      buttons.push(b);
      parts.push(b);
    }
    parts.push(lines.join("\n"));
    t.replaceChildren(...parts.filter((x) => x !== ""));
    return buttons;
  }
  // "Olga is typing…" while an operator writes: each sign of it lasts 6 s, or until the message.
  let typist = null, typistEnds = 0;
  function stopTyping() {
    clearTimeout(typistEnds);
    if (typist) typist.remove();
    typist = null;
  }
  function listen() {
    if (events || !session) return;
    // After what the history brought (none of it twice); a new conversation, from its start.
    const from = eventsAfter ? `&after=${eventsAfter}` : "";
    events = new EventSource(`${base}/api/chat/${session}/events?site_key=${encodeURIComponent(key)}${from}`);
    events.addEventListener("typing", (e) => {
      const d = JSON.parse(e.data);
      typist = typist || add("operator typing", "");
      typist.querySelector(".t").textContent = `${d.operator} is typing`;
      log.appendChild(typist);  // below what came since
      log.scrollTop = log.scrollHeight;
      clearTimeout(typistEnds);
      typistEnds = setTimeout(stopTyping, 6000);
    });
    events.addEventListener("operator", (e) => {
      const d = JSON.parse(e.data);
      stopTyping();
      withPerson(d.state);
      if (isOpen()) seen(Date.now() / 1000); else unseen(unread + 1);
      const m = add("operator", d.text, d.operator);
      if (d.file) attachment(m, d.file, d.text);
      feedback(m, d.rating_id, d.operator);
    });
  }
  // Site style, the conversation so far (or a new session) and the greeting, once; a message sent
  // before that is done waits for it.
  function start(greet = true) {
    return (ready ||= begin(greet).catch((e) => { ready = null; throw e; }));  // failed: try again next time
  }
  // Under the title: whether a person is there to ask for ("usually answers within 4 minutes"),
  // or when the team is back; nothing when it is simply not known.
  async function team() {
    const t = await (await api("/api/team")).json().catch(() => ({}));
    const within = (s) => s <= 60 ? "a minute" : `${Math.ceil(s / 60)} minutes`;
    const text = t.here ? `Our team is here${t.usual_wait_s ? `: usually answers within ${within(t.usual_wait_s)}` : ""}`
      : t.back ? `Our team is away, back ${t.back}` : "";
    $(".team").textContent = text;
    $(".team").hidden = !text;
  }
  // The conversation is gone from the server (deleted, or expired): the next message starts anew.
  function forget() {
    if (events) { events.close(); events = null; }
    for (const kept of [store, `${store}:state`, `${store}:seen`]) localStorage.removeItem(kept);
    session = ready = null;
    eventsAfter = "";
  }
  async function begin(greet) {
    const site = await (await api("/api/site")).json();
    panel.style.setProperty("--c", site.colour); bubble.style.setProperty("--c", site.colour);
    $("h2").textContent = site.title;
    team().catch(() => {});  // only a line under the title
    if (site.privacy_url) { $(".privacy a").href = site.privacy_url; $(".privacy").hidden = false; }
    let replayed = 0;
    localStorage.removeItem(`${store}:state`);  // the history says it again (none: the assistant)
    if (session) {
      const r = await api(`/api/chat/${session}/history`);
      if (r.ok) {
        let offered = [];  // the last reply's suggestion buttons: picked if the next question is one
        const { turns, events_after: after } = await r.json();
        eventsAfter = after;
        replayed = turns.filter((t) => t.role !== "system").length;
        for (const t of turns) {
          if (t.role === "system") withPerson((t.text.match(/^state: (\w+)/) || [])[1]);
          if (t.role === "user") {
            if (offered.some((b) => b.textContent === t.text)) offered.forEach((b) => { b.disabled = true; });
            offered = [];
            const m = add("user", t.text);
            if (t.file) attachment(m, t.file, t.text);
          } else if (t.role === "operator") {
            if (!isOpen() && t.ts > seenAt()) unseen(unread + 1);
            const m = add("operator", t.text, t.operator);
            if (t.file) attachment(m, t.file, t.text);
          }
          else if (t.role === "assistant") {
            const m = add("bot", t.text, sourcesNote(t.sources));
            offered = suggest(m.querySelector(".t"), t.suggestions);
            feedback(m, t.reply_id);
          }
        }
      } else session = null;
    }
    if (!session) {
      const r = await api("/api/sessions", { method: "POST" });
      session = (await r.json()).session_id;
      localStorage.setItem(store, session);
    }
    if (!replayed && greet) add("bot", site.greeting);
    listen();
  }
  async function ask(text) {
    const u = add("user", text);
    const m = add("bot typing", "");
    try {
      await start();
      log.append(u, m);  // after the history and greeting that start() may have just shown
      if (await send(text, m, false)) { forget(); await start(false); await send(text, m, true); }
    } catch {  // no connection, or it broke off before the reply was complete (nothing is stored)
      m.className = "m bot";
      m.querySelector(".t").textContent = "Sorry, the connection failed. Please try again.";
    }
    log.scrollTop = log.scrollHeight;
  }
  // The reply to `text`, streamed into `m`. True when the server no longer knows the conversation
  // (and `last` is false): nothing was shown then.
  async function send(text, m, last) {
    const t = m.querySelector(".t");
    const r = await api("/api/chat/stream", { method: "POST", body: JSON.stringify({ session_id: session, message: text, page: pageAddress() }) });
    if (!r.ok) {  // refused before any reply (a limit, the site's key, the server unavailable)
      m.className = "m bot";
      t.textContent = (await r.json().catch(() => ({}))).error || "Sorry, something went wrong. Please try again.";
      return false;
    }
    const reader = r.body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const type = (block.match(/^event: (.*)$/m) || [])[1];
        const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
        if (!data) continue;
        const d = JSON.parse(data);
        if (type === "token") t.textContent += d.text;
        else if (type === "done") {
          m.className = "m bot";
          withPerson(d.state);
          if (!d.reply) { m.remove(); continue; }
          t.textContent = d.reply;
          suggest(t, d.suggestions);
          const note = sourcesNote(d.sources);
          if (note) { const n = document.createElement("div"); n.className = "note"; n.textContent = note; m.appendChild(n); }
          feedback(m, d.reply_id);
        } else if (type === "error") {
          if (d.status === 404 && !last) return true;
          m.className = "m bot"; t.textContent = d.error;
        }
      }
    }
    if (m.classList.contains("typing")) throw new Error("the reply was cut off");
    return false;
  }
  function toggle(open) {
    panel.classList.toggle("open", open);
    bubble.setAttribute("aria-expanded", String(open));
    if (open) seen(Date.now() / 1000);
    unseen(open ? 0 : unread);
    if (open) start().catch(() => {}).then(() => input.focus()); else bubble.focus();  // offline: a question says so
  }
  bubble.onclick = () => toggle(!panel.classList.contains("open"));
  $(".close").onclick = () => toggle(false);
  root.addEventListener("keydown", (e) => { if (e.key === "Escape") toggle(false); });
  $(".human").onclick = () => ask("I'd like to talk to a human");
  // The customer deletes the conversation (everything the server kept of it); a new one starts.
  $(".erase").onclick = async () => {
    try {
      await start();
      if (!confirm("Delete this conversation? This cannot be undone.")) return;
      const r = await api(`/api/chat/${session}`, { method: "DELETE" });
      if (!r.ok) { add("bot", (await r.json().catch(() => ({}))).error || "Sorry, something went wrong. Please try again."); return; }
    } catch {  // no connection: nothing was deleted
      add("bot", "Sorry, the connection failed, so nothing was deleted. Please try again.");
      return;
    }
    forget();
    withPerson("bot");
    log.textContent = "";
    add("bot", "This conversation has been deleted.");
    await start().catch(() => {});  // offline now: the next question starts it
  };
  // The customer keeps a copy of the conversation: a text file of who wrote what, and when.
  $(".save").onclick = async () => {
    try {
      await start();
      const r = await api(`/api/chat/${session}/history`);
      if (!r.ok) throw new Error(r.status);
      const title = $("h2").textContent;
      const by = (t) => t.role === "user" ? "You" : t.role === "operator" ? t.operator || title : title;
      const lines = (await r.json()).turns.filter((t) => t.role !== "system")
        .map((t) => `${new Date(t.ts * 1000).toLocaleString()}, ${by(t)}:\n${t.text}`);
      const text = `${title}: our conversation\n\n${lines.join("\n\n")}\n`;
      const day = new Date().toISOString().slice(0, 10);
      const a = Object.assign(document.createElement("a"), { href: URL.createObjectURL(new Blob([text], { type: "text/plain" })), download: `conversation-${day}.txt` });
      root.appendChild(a);
      a.click();
      a.remove();
    } catch {  // no connection
      add("bot", "Sorry, the connection failed, so no copy was saved. Please try again.");
    }
  };
  // A photo or file for the person the customer waits for or talks to (the assistant reads only
  // text: the server says so, and to ask for a person first).
  const picker = $(".file");
  $(".attach").onclick = () => picker.click();
  picker.onchange = async () => {
    const f = picker.files[0];
    picker.value = "";
    if (!f) return;
    const m = add("user", `📎 ${f.name}`);
    if (f.type.startsWith("image/")) m.querySelector(".t").appendChild(Object.assign(document.createElement("img"), { src: URL.createObjectURL(f), alt: f.name }));
    try {
      await start();
      log.append(m);
      const r = await fetch(`${base}/api/chat/${session}/files?name=${encodeURIComponent(f.name)}`, { method: "POST", body: f, headers: { "content-type": f.type || "application/octet-stream", "x-site-key": key } });
      const d = await r.json().catch(() => ({}));
      if (r.status === 409) withPerson("bot");  // back with the assistant meanwhile
      if (!r.ok) add("bot", d.error || "Sorry, the file could not be sent. Please try again.");
      else if (d.reply) add("bot", d.reply);
    } catch {
      add("bot", "Sorry, the connection failed, so the file was not sent. Please try again.");
    }
  };
  // The person who has the conversation sees that the customer is typing (a sign every 4 s).
  let typedAt = 0;
  input.addEventListener("input", () => {
    const withThem = localStorage.getItem(`${store}:state`) === "human";
    if (!session || !withThem || !input.value.trim() || Date.now() - typedAt < 4000) return;
    typedAt = Date.now();
    api(`/api/chat/${session}/typing`, { method: "POST" }).catch(() => {});
  });
  $("form").onsubmit = (e) => {
    e.preventDefault();
    const text = input.value.trim();
    if (text) { input.value = ""; typedAt = 0; ask(text); }
  };
  bubble.style.setProperty("--c", "#2563eb");
  // A customer who waits for or talks to a person and opens another page of the site: the
  // conversation reconnects at once, so that what the operator writes is counted on the bubble.
  const person = localStorage.getItem(`${store}:state`);
  if (session && person && person !== "bot") start(false).catch(() => {});
})();
