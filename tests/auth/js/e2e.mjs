// Sign up, sign in, change the password, sign in again — with @supabase/supabase-js,
// unchanged, against Syntera. Prints the user as JSON; exits non-zero on any failure.
import { createClient } from "@supabase/supabase-js";
import ws from "ws";

const [url, anonKey, email, password, newPassword] = process.argv.slice(2);
const supabase = createClient(url, anonKey, {
  auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
  realtime: { transport: ws },
});

function check(step, { data, error }) {
  if (error) throw new Error(`${step}: ${error.status} ${error.code} ${error.message}`);
  return data;
}

const signedUp = check("signUp", await supabase.auth.signUp({ email, password }));
check("signInWithPassword", await supabase.auth.signInWithPassword({ email, password }));
check("updateUser", await supabase.auth.updateUser({ password: newPassword }));
check("signOut", await supabase.auth.signOut());
const old = await supabase.auth.signInWithPassword({ email, password });
if (!old.error) throw new Error("the old password still signs in");
const again = check(
  "signInWithPassword (new password)",
  await supabase.auth.signInWithPassword({ email, password: newPassword }),
);
const fetched = check("getUser", await supabase.auth.getUser());
console.log(JSON.stringify({
  signedUp: signedUp.user.id, signedIn: again.user.id, fetched: fetched.user.id,
  email: fetched.user.email, oldPasswordError: old.error.code,
}));
