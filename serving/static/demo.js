// The demo page: plain JS against the same JSON API any client uses (no build step, no CDN).
"use strict";

const $ = (id) => document.getElementById(id);
const base = new URL("..", window.location.href); // the app root, wherever the page is mounted

$("api-key").value = sessionStorage.getItem("s3jedi-api-key") || "";
$("api-key").addEventListener("change", () => {
  sessionStorage.setItem("s3jedi-api-key", $("api-key").value);
  loadModels();
});

function headers(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  const key = $("api-key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function showError(status, body) {
  const e = (body && body.error) || { message: String(body) };
  $("error").textContent = `HTTP ${status}` + (e.field ? ` — ${e.field}` : "") + `: ${e.message}`;
  $("error").hidden = false;
}

function clearMessages() {
  $("error").hidden = true;
  $("error").textContent = "";
}

async function call(method, path, body) {
  const response = await fetch(new URL(path, base), {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let parsed;
  try { parsed = await response.json(); } catch (err) { parsed = await response.text(); }
  if (!response.ok) {
    showError(response.status, parsed);
    return null;
  }
  return parsed;
}

async function loadModels() {
  const models = await call("GET", "v1/models");
  if (!models) return;
  clearMessages();
  $("server-info").textContent =
    `JeDi: ${models.personalize.model}, up to ${models.personalize.max_references} references; ` +
    `text-to-image: ${models.generate.model}`;
  const select = $("subject");
  select.length = 1;
  for (const s of models.subjects) {
    select.add(new Option(`${s.subject_id} (${s.method}, ${s.tokens.join(" ")} ${s.class_word})`, s.subject_id));
  }
}

function readAsDataURL(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

$("references").addEventListener("change", async () => {
  $("previews").replaceChildren();
  for (const file of $("references").files) {
    const img = document.createElement("img");
    img.src = await readAsDataURL(file);
    img.alt = file.name;
    $("previews").append(img);
  }
});

function numberOrNull(id) {
  const v = $(id).value.trim();
  return v === "" ? null : Number(v);
}

function lines(id) {
  return $(id).value.split("\n").map((l) => l.trim()).filter((l) => l);
}

function showResults(reply) {
  const results = $("results");
  results.replaceChildren();
  for (const item of reply.images) {
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.className = "result";
    img.src = "data:image/png;base64," + item.image;
    img.alt = item.prompt;
    const caption = document.createElement("figcaption");
    caption.textContent = `${item.prompt} (seed ${item.seed})`;
    figure.append(img, caption);
    results.append(figure);
  }
  $("status").textContent =
    `${reply.images.length} image(s) in ${reply.seconds.toFixed(2)} s, batch of ${reply.batch_size}, ` +
    `${reply.parameters.steps} steps`;
}

async function run(button, path, body) {
  clearMessages();
  button.disabled = true;
  $("status").textContent = "working…";
  try {
    const reply = await call("POST", path, body);
    if (reply) showResults(reply);
    else $("status").textContent = "";
  } finally {
    button.disabled = false;
  }
}

function common(promptsId) {
  const body = { prompts: lines(promptsId), images_per_prompt: numberOrNull("images-per-prompt") || 1 };
  for (const [key, id] of [["steps", "steps"], ["guidance_scale", "guidance"], ["seed", "seed"]]) {
    const v = numberOrNull(id);
    if (v !== null) body[key] = v;
  }
  return body;
}

$("personalize-button").addEventListener("click", async () => {
  const files = Array.from($("references").files);
  const body = common("prompts");
  body.references = await Promise.all(files.map(async (f) => ({ image: await readAsDataURL(f) })));
  const imageGuidance = numberOrNull("image-guidance");
  if (imageGuidance !== null) body.image_guidance_scale = imageGuidance;
  await run($("personalize-button"), "v1/personalize", body);
});

$("generate-button").addEventListener("click", async () => {
  const body = common("generate-prompts");
  if ($("subject").value) body.subject_id = $("subject").value;
  await run($("generate-button"), "v1/generate", body);
});

loadModels();
