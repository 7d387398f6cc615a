import { benchInterp } from "./interp.js";
import { benchRoundtrip } from "./roundtrip.js";
import { benchNative } from "./native.js";
import { benchCheck } from "./check.js";

/** `npm run bench`: prints one JSON line per figure. */
benchInterp();
benchRoundtrip();
benchNative();
benchCheck();
