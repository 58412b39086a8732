// The specification's data examples with @supabase/supabase-js, unchanged, against
// Syntera's /rest/v1. Arguments: the API's URL, the anon key, the bearer to send (a user's
// access token, the anon key or the service-role key) and the company to work in. Prints
// one JSON object: each step's { data, error code, count, status }; tests/rest judges it.
import { randomUUID } from "node:crypto";
import { createClient } from "@supabase/supabase-js";
import ws from "ws";

const [url, anonKey, bearer, companyId] = process.argv.slice(2);
const supabase = createClient(url, anonKey, {
  auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
  global: { headers: { Authorization: `Bearer ${bearer}` } },
  realtime: { transport: ws },
});

const steps = {};
async function step(name, query) {
  const { data, error, count, status } = await query;
  steps[name] = { data, error: error ? (error.code ?? error.message ?? "") : null, count, status };
  return data;
}

await step("agents", supabase.from("agent_configs").select("*").eq("company_id", companyId));
const contact = await step(
  "insert",
  supabase
    .from("contacts")
    .insert({ company_id: companyId, email: "js@example.com", first_name: "Js" })
    .select()
    .single(),
);
const contactId = contact ? contact.id : randomUUID();
await step(
  "insertDeals",
  supabase.from("deals").insert(
    [0, 1, 2].map((i) => ({
      company_id: companyId, contact_id: contactId, title: `Js deal ${i}`, value: i,
    })),
  ),
);
await step(
  "page",
  supabase
    .from("deals")
    .select("*", { count: "exact" })
    .eq("contact_id", contactId)
    .order("created_at", { ascending: false })
    .order("title", { ascending: false })
    .range(0, 1),
);
await step(
  "embed",
  supabase.from("deals").select("title, contacts(email)").eq("contact_id", contactId).order("title"),
);
await step(
  "upsert",
  supabase.from("contacts").upsert({ company_id: companyId, email: "js-upsert@example.com" }).select(),
);
await step(
  "update",
  supabase.from("contacts").update({ last_name: "Updated" }).eq("id", contactId).select(),
);
await step("single", supabase.from("contacts").select("id, last_name").eq("id", contactId).single());
await step("maybeSingle", supabase.from("contacts").select("*").eq("id", randomUUID()).maybeSingle());
await step(
  "count",
  supabase.from("deals").select("*", { count: "exact", head: true }).eq("contact_id", contactId),
);
await step("rpc", supabase.rpc("pending_invitations"));
await step("deleteDeals", supabase.from("deals").delete().eq("contact_id", contactId).select("id"));
await step("delete", supabase.from("contacts").delete().eq("id", contactId).select("id"));
console.log(JSON.stringify({ contactId, steps }));
