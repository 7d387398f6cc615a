import { benchInterp } from "./interp.js";
import { benchRoundtrip } from "./roundtrip.js";

/** `npm run bench`: prints one JSON line per figure. */
benchInterp();
benchRoundtrip();
