import fc from "fast-check";

// Everything random is seeded: the same runs on every machine. FC_SEED / FC_PATH replay a
// reported failure exactly (fast-check prints both on failure).
const seed = process.env.FC_SEED === undefined ? 20191105 : Number(process.env.FC_SEED);
const path = process.env.FC_PATH;
fc.configureGlobal({ seed, ...(path === undefined ? {} : { path }), endOnFailure: false });
