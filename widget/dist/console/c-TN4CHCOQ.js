import{a,b,c}from"./c-OBJWB5RD.js";import"./c-ICQTVKB5.js";export{a as Forgot,c as Reset,b as useLinkToken};
