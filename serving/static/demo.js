// The demo page: plain JS against the same JSON API any client uses (no build step, no CDN).
"use strict";

const $ = (id) => document.getElementById(id);
const base = new URL("..", window.location.href); // the app root, wherever the page is mounted
let examples = []; // reference sets offered by the server (GET /v1/examples)
let exampleReferences = null; // data URLs of the chosen set, used when no file is chosen

$("api-key").value = sessionStorage.getItem("s3jedi-api-key") || "";
$("api-key").addEventListener("change", () => {
  sessionStorage.setItem("s3jedi-api-key", $("api-key").value);
  loadServer();
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
  // The API's messages start with the field they name ("references: ..."); others get it prefixed.
  const named = !e.field || e.message.startsWith(e.field + ":");
  $("error").textContent = `HTTP ${status}: ` + (named ? e.message : `${e.field}: ${e.message}`);
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

async function loadServer() {
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
  const offered = await call("GET", "v1/examples");
  examples = offered ? offered.examples : [];
  $("example").length = 1;
  examples.forEach((e, i) => $("example").add(new Option(e.name, String(i))));
  $("examples").hidden = examples.length === 0;
}

function showPreviews(sources) {
  $("previews").replaceChildren();
  for (const [src, alt] of sources) {
    const img = document.createElement("img");
    img.src = src;
    img.alt = alt;
    $("previews").append(img);
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

$("example").addEventListener("change", () => {
  const chosen = examples[Number($("example").value)];
  $("references").value = "";
  exampleReferences = chosen ? chosen.references : null;
  $("example-description").textContent = chosen ? chosen.description : "";
  if (chosen) $("prompts").value = chosen.prompts.join("\n");
  showPreviews((exampleReferences || []).map((src, i) => [src, `${chosen.name}, reference ${i + 1}`]));
});

$("references").addEventListener("change", async () => {
  exampleReferences = null;
  $("example").value = "";
  $("example-description").textContent = "";
  const files = Array.from($("references").files);
  showPreviews(await Promise.all(files.map(async (f) => [await readAsDataURL(f), f.name])));
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
    const text = document.createElement("span");
    text.textContent = `${item.prompt} (seed ${item.seed})`;
    const download = document.createElement("a");
    download.className = "download";
    download.href = img.src;
    download.download = `s3jedi-seed-${item.seed}.png`;
    download.textContent = "Download";
    caption.append(text, document.createElement("br"), download);
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
  for (const [key, id] of [["steps", "steps"], ["guidance_scale", "guidance"]]) {
    const v = numberOrNull(id);
    if (v !== null) body[key] = v;
  }
  // Seeds are integers below 2^53, exact as JS numbers. A longer one typed here would be rounded
  // by Number(), so it goes as typed and the server names the limit.
  const seed = $("seed").value.trim();
  if (seed !== "") body.seed = Number.isSafeInteger(Number(seed)) ? Number(seed) : seed;
  return body;
}

$("personalize-button").addEventListener("click", async () => {
  const files = Array.from($("references").files);
  const body = common("prompts");
  body.references = files.length
    ? await Promise.all(files.map(async (f) => ({ image: await readAsDataURL(f) })))
    : (exampleReferences || []).map((image) => ({ image }));
  const imageGuidance = numberOrNull("image-guidance");
  if (imageGuidance !== null) body.image_guidance_scale = imageGuidance;
  // The paper's guidance has one scale: a text guidance goes only with the decomposed mode.
  if ($("guidance-mode").value) body.guidance = $("guidance-mode").value;
  if (body.guidance !== "decomposed") delete body.guidance_scale;
  if ($("joint-targets").value) body.joint_targets = $("joint-targets").value === "true";
  await run($("personalize-button"), "v1/personalize", body);
});

$("generate-button").addEventListener("click", async () => {
  const body = common("generate-prompts");
  if ($("subject").value) body.subject_id = $("subject").value;
  await run($("generate-button"), "v1/generate", body);
});

loadServer();
