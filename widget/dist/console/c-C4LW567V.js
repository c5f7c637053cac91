import{a,b,c}from"./c-7CTLOV33.js";import"./c-QJEFN25O.js";export{a as Forgot,c as Reset,b as useLinkToken};
