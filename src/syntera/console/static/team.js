// For owners and admins: the team, its invitations, and the company's settings.

import { api } from "./api.js";
import { busy, field, fill, h, notice, pagedList, select, when } from "./ui.js";

const ROLES = [["user", "user"], ["admin", "admin"]];

export async function renderTeam(main, context) {
  const status = notice();
  const members = pagedList(
    (cursor) => api("GET", "/v1/team", { query: { limit: 20, cursor } }),
    (member) => {
      const label = member.name && member.name !== member.email ? `${member.name} <${member.email}>` : member.email;
      if (member.role === "owner" || member.id === context.user.id) {
        return h("li", {}, `${label} · ${member.role}${member.id === context.user.id ? " (you)" : ""}`);
      }
      const role = select(ROLES, member.role, { "aria-label": `Role of ${member.name || member.email}` });
      const remove = h("button", { type: "button", class: "link" }, "Remove");
      const row = h("li", {}, `${label} · `, role, " ", remove);
      role.addEventListener("change", () => busy(remove, status, async () => {
        await api("PATCH", `/v1/team/${member.id}`, { json: { role: role.value } });
        status.ok(`${member.name || member.email} is now ${role.value}.`);
      }));
      remove.addEventListener("click", () => busy(remove, status, async () => {
        await api("DELETE", `/v1/team/${member.id}`);
        row.remove();
        status.ok(`Removed ${member.name || member.email}.`);
      }));
      return row;
    },
    { label: "Members" },
  );
  const invitations = pagedList(
    (cursor) => api("GET", "/v1/team/invitations", { query: { limit: 20, cursor } }),
    (invitation) => {
      const cancel = h("button", { type: "button", class: "link" }, "Cancel");
      const row = h("li", {}, `${invitation.email} as ${invitation.role} · `,
        invitation.accepted_at ? `accepted ${when(invitation.accepted_at)}` : `expires ${when(invitation.expires_at)}`, " ",
        invitation.accepted_at ? null : cancel);
      cancel.addEventListener("click", () => busy(cancel, status, async () => {
        await api("DELETE", `/v1/team/invitations/${invitation.id}`);
        row.remove();
      }));
      return row;
    },
    { label: "Invitations", empty: "No invitations." },
  );
  const email = h("input", { type: "email", required: true, maxlength: 320 });
  const role = select(ROLES, "user");
  const invite = h("button", { type: "submit" }, "Invite");
  const inviteStatus = notice();
  const form = h("form", { class: "card", onsubmit: (event) => {
    event.preventDefault();
    busy(invite, inviteStatus, async () => {
      const invitation = await api("POST", "/v1/team/invitations", { json: { email: email.value, role: role.value } });
      invitations.prepend(invitation);
      form.reset();
      inviteStatus.ok(`Invited ${invitation.email}.`);
    });
  } }, h("h2", {}, "Invite someone"), field("Email", email), field("Role", role), invite, inviteStatus);
  fill(main, h("h1", {}, "Team"), status, h("h2", {}, "Members"), members.element,
    h("h2", {}, "Invitations"), invitations.element, form);
  await Promise.all([members.reload(), invitations.reload()]);
}

export async function renderSettings(main) {
  const company = await api("GET", "/v1/companies/current");
  const name = h("input", { required: true, maxlength: 200, value: company.name });
  const status = notice();
  const save = h("button", { type: "submit" }, "Save");
  // Shown only where the server has the setting.
  const autoAssign = "auto_assign_handoffs" in company
    ? h("input", { type: "checkbox", checked: Boolean(company.auto_assign_handoffs) }) : null;
  fill(main, h("h1", {}, "Company settings"),
    h("form", { class: "card", onsubmit: (event) => {
      event.preventDefault();
      busy(save, status, async () => {
        const changes = { name: name.value };
        if (autoAssign) changes.auto_assign_handoffs = autoAssign.checked;
        const saved = await api("PATCH", "/v1/companies/current", { json: changes });
        status.ok(`Saved: ${saved.name}.`);
      });
    } }, field("Company name", name),
    autoAssign ? h("div", { class: "field checkbox" }, h("label", {}, autoAssign,
      " Give a conversation handed to people to the online member with the fewest open conversations")) : null,
    h("p", {}, `Plan: ${company.subscription_tier} · created ${when(company.created_at)}`), save, status));
}
