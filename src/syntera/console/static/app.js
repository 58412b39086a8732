// The console: sign in, find out who is asking, and show the page the address names
// (#/inbox, #/contacts/…, #/operator). Each page is a module with render(main, context),
// which may return a function that stops what it started (streams, timers).

import { api, ApiError, currentUser, rememberUser, signIn, signOut, signedIn } from "./api.js";
import { busy, field, fill, h, notice } from "./ui.js";
import * as inbox from "./inbox.js";
import * as crm from "./crm.js";
import * as knowledge from "./knowledge.js";
import * as agents from "./agents.js";
import * as workflows from "./workflows.js";
import * as analytics from "./analytics.js";
import * as reports from "./reports.js";
import * as replies from "./replies.js";
import * as team from "./team.js";
import * as operator from "./operator.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");

// [path, label, render, who may see it]
const PAGES = [
  ["inbox", "Inbox", inbox.render, "member"],
  ["replies", "Saved replies", replies.render, "member"],
  ["contacts", "Contacts", crm.renderContacts, "member"],
  ["deals", "Deals", crm.renderDeals, "member"],
  ["knowledge", "Knowledge base", knowledge.render, "member"],
  ["agents", "Agents", agents.render, "member"],
  ["workflows", "Workflows", workflows.render, "member"],
  ["analytics", "Analytics", analytics.render, "member"],
  ["reports", "Reports", reports.render, "member"],
  ["team", "Team", team.renderTeam, "manager"],
  ["settings", "Settings", team.renderSettings, "manager"],
  ["operator", "Operator", operator.render, "operator"],
];

let context = null;
let stopPage = null;
// A page that routes inside itself (the inbox opening a conversation) keeps its state:
// render may return {stop, navigate(rest)} instead of a stop function.
let navigatePage = null;
let shownPage = null;
let rendering = 0; // which call of show() renders the page now

function allowed(audience) {
  if (!context) return false;
  if (audience === "member") return context.company !== null;
  if (audience === "manager") return context.company !== null && ["owner", "admin"].includes(context.role);
  return context.operator;
}

/** Who is signed in: their company and role (none when they belong to no company), and
 * whether they operate the platform. */
async function loadContext() {
  const user = currentUser();
  let company = null;
  let role = null;
  try {
    company = await api("GET", "/v1/companies/current");
    role = (await api("GET", `/v1/team/${user.id}`)).role;
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 403) throw error;
  }
  let isOperator = false;
  try {
    await api("GET", "/v1/admin/queues");
    isOperator = true;
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 403) throw error;
  }
  return { user, company, role, operator: isOperator };
}

function renderNav() {
  const current = location.hash.split("/")[1] || "";
  fill(nav, PAGES.filter(([, , , audience]) => allowed(audience)).map(([path, label]) =>
    h("a", { href: `#/${path}`, "aria-current": path === current ? "page" : null }, label)));
  fill(who, h("button", { type: "button", class: "link", title: "Change your name",
    onclick: editName }, nameOf(context.user)), context.company ? ` · ${context.company.name}` : "",
    context.role ? ` (${context.role})` : "", context.operator ? " · operator" : "",
    " ", h("button", { type: "button", class: "link", onclick: async () => {
      await signOut();
      context = null;
      show();
    } }, "Sign out"));
}

/** How teammates see the user: full_name, else name, from their user_metadata, else
 * their email (as the API's `name` of a member). */
function nameOf(user) {
  const metadata = user.user_metadata || {};
  return (metadata.full_name || metadata.name || "").trim() || user.email;
}

/** The signed-in user names themselves: Supabase Auth's user_metadata.full_name. */
function editName() {
  const metadata = context.user.user_metadata || {};
  const input = h("input", { type: "text", maxlength: 120, "aria-label": "Your name",
    value: metadata.full_name || metadata.name || "" });
  const save = h("button", { type: "submit" }, "Save name");
  const status = notice();
  fill(who, h("form", { onsubmit: (event) => {
    event.preventDefault();
    busy(save, status, async () => {
      const data = { full_name: input.value.trim() || null };
      const user = await api("PUT", "/auth/v1/user", { json: { data } });
      rememberUser(user);
      context.user = user;
      renderNav();
    });
  } }, input, " ", save, status));
  input.focus();
}

function signInPage() {
  fill(nav);
  fill(who);
  const email = h("input", { type: "email", autocomplete: "username", required: true });
  const password = h("input", { type: "password", autocomplete: "current-password", required: true });
  const status = notice();
  const submit = h("button", { type: "submit" }, "Sign in");
  const form = h("form", { class: "card narrow", onsubmit: (event) => {
    event.preventDefault();
    busy(submit, status, async () => {
      await signIn(email.value, password.value);
      await show();
    }, "Signing in…");
  } }, h("h1", {}, "Sign in"), field("Email", email), field("Password", password), submit, status);
  fill(main, form);
  email.focus();
}

function noCompanyPage() {
  const name = h("input", { required: true, maxlength: 200 });
  const status = notice();
  const create = h("button", { type: "submit" }, "Create company");
  const invitations = h("ul", { class: "list", "aria-label": "Invitations" });
  fill(main, h("section", { class: "card narrow" },
    h("h1", {}, "You belong to no company yet"),
    h("p", {}, "Accept an invitation, or create a company of your own."),
    invitations,
    h("form", { onsubmit: (event) => {
      event.preventDefault();
      busy(create, status, async () => {
        await api("POST", "/v1/companies", { json: { name: name.value } });
        context = await loadContext();
        location.hash = "#/inbox";
        await show();
      });
    } }, field("Company name", name), create), status));
  api("GET", "/v1/invitations").then((answer) => {
    for (const invitation of answer.data) {
      const accept = h("button", { type: "button" }, "Accept");
      accept.addEventListener("click", () => busy(accept, status, async () => {
        await api("POST", `/v1/invitations/${invitation.id}/accept`);
        context = await loadContext();
        location.hash = "#/inbox";
        await show();
      }));
      invitations.append(h("li", {}, `${invitation.company_name || "A company"} invites you as ${invitation.role}. `, accept));
    }
  }).catch((error) => status.error(error));
}

async function show() {
  const [, wanted, ...within] = location.hash.split("/");
  if (navigatePage && shownPage === wanted && context) {
    renderNav();
    navigatePage(within.map(decodeURIComponent));
    return;
  }
  navigatePage = null;
  shownPage = null;
  rendering += 1;
  if (stopPage) { stopPage(); stopPage = null; }
  if (!signedIn()) { signInPage(); return; }
  try {
    if (!context) context = await loadContext();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) { await signOut(); signInPage(); return; }
    fill(main, h("p", { class: "notice error", role: "alert" }, error.message));
    return;
  }
  const [, path, ...rest] = location.hash.split("/");
  const page = PAGES.find(([name]) => name === path);
  if (!page || !allowed(page[3])) {
    const first = PAGES.find(([, , , audience]) => allowed(audience));
    if (!first) { renderNav(); noCompanyPage(); return; }
    if (page) {
      renderNav();
      fill(main, h("section", { class: "card" }, h("h1", {}, "Not for you"),
        h("p", { role: "alert" }, `The ${page[1]} page is for ${page[3] === "operator" ? "the platform's operators" : "owners and admins"}.`)));
      return;
    }
    location.replace(`#/${first[0]}`);
    return;
  }
  renderNav();
  // Each page renders into its own holder: a page still loading when the address moves
  // on writes into a holder no longer shown, and is stopped as soon as it is done.
  const mine = (rendering += 1);
  const holder = h("div", { class: "page" });
  fill(main, holder);
  let started = null;
  try {
    started = (await page[2](holder, context, rest.map(decodeURIComponent))) || null;
  } catch (error) {
    holder.append(h("p", { class: "notice error", role: "alert" }, error.message));
  }
  const stop = started && typeof started === "object" ? started.stop : started;
  if (mine !== rendering) {
    if (stop) stop();
    return;
  }
  stopPage = stop;
  if (started && typeof started === "object") {
    navigatePage = started.navigate;
    shownPage = path;
  }
  main.focus({ preventScroll: true });
}

window.addEventListener("hashchange", show);
show();
