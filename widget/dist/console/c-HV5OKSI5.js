import{a,b,c}from"./c-AILDUZEF.js";import"./c-XCDB4ZLE.js";import"./c-N5SRNF4V.js";export{a as Forgot,c as Reset,b as useLinkToken};
