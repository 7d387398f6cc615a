import { benchInterp } from "./interp.js";
import { benchRoundtrip } from "./roundtrip.js";
import { benchNative } from "./native.js";
import { benchCheck } from "./check.js";
import { benchSmp } from "./smp.js";
import { benchCampaign } from "./campaign.js";
import { benchPatch } from "./patch.js";

/** `npm run bench`: prints one JSON line per figure. */
benchInterp();
benchRoundtrip();
benchNative();
benchCheck();
benchSmp();
benchCampaign();
benchPatch();
